#[chi_sdk::task(method = 10, yaml = "../chimaera_mod.yaml")]
pub struct CustomTask {
    pub values: Vec<u64>,
    #[output]
    pub names: chi_sdk::shm::ShmVec<std::string::String>,
}

fn main() {}
