#[chi_sdk::task(method = 10, yaml = "bad_mod.yaml")]
pub struct CustomTask {
    pub id: u32,
}

fn main() {}
