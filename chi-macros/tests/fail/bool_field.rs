#[chi_sdk::task(method = 10, yaml = "../chimaera_mod.yaml")]
pub struct CustomTask {
    pub verbose: bool,
    pub initial: char,
}

fn main() {}
