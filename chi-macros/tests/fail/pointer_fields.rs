#[chi_sdk::task(method = 10, yaml = "../chimaera_mod.yaml")]
pub struct CustomTask {
    pub key: &'static str,
    pub raw: *const u8,
    pub boxed: Box<u64>,
    pub maybe: Option<u32>,
}

fn main() {}
