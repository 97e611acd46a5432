#[chi_sdk::task(method = 10, yaml = "../chimaera_mod.yaml")]
pub struct CustomTask {
    pub id: u32,
    pub name: String,
}

fn main() {}
