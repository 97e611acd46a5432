#[chi_sdk::task(method = 14, yaml = "../chimaera_mod.yaml")]
pub struct CompressTask {
    pub level: u32,
}

#[chi_sdk::task(method = 15, name = "kDecompress", yaml = "../chimaera_mod.yaml")]
pub struct Decompress {
    pub level: u32,
}

#[chi_sdk::task(method = 2, name = "kNodeFailure", yaml = "../chimaera_mod.yaml")]
pub struct NodeFailure;

fn main() {}
