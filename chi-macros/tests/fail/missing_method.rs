#[chi_sdk::task]
pub struct CustomTask {
    pub id: u32,
}

#[chi_sdk::task(yaml = "../chimaera_mod.yaml", method = -1)]
pub struct PingTask;

#[chi_sdk::task(method = 10, colour = "red", yaml = "../chimaera_mod.yaml")]
pub struct Custom;

fn main() {}
