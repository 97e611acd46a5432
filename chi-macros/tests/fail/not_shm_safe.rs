/// A type of the module that does not implement `ShmSafe`.
pub struct Config {
    pub depth: u32,
}

#[chi_sdk::task(method = 10, yaml = "../chimaera_mod.yaml")]
pub struct CustomTask {
    pub id: u32,
    pub config: Config,
}

fn main() {}
