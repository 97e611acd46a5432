#[chi_sdk::task(method = 13, yaml = "../chimaera_mod.yaml")]
pub struct CustomTask {
    pub id: u32,
}

fn main() {}
