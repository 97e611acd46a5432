#[chi_sdk::task(method = 10, yaml = "../chimaera_mod.yaml")]
pub struct CustomTask<T> {
    pub value: T,
}

fn main() {}
