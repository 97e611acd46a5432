#[chi_sdk::task(method = 10, yaml = "../chimaera_mod.yaml")]
pub struct CustomTask(pub u32, pub u64);

fn main() {}
