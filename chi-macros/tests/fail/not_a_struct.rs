#[chi_sdk::task(method = 10, yaml = "../chimaera_mod.yaml")]
pub enum CustomTask {
    Small,
    Large,
}

#[chi_sdk::task(method = 10, yaml = "../chimaera_mod.yaml")]
fn custom() {}

fn main() {}
