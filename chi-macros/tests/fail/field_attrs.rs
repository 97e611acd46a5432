#[chi_sdk::task(method = 10, yaml = "../chimaera_mod.yaml")]
#[repr(C)]
pub struct CustomTask {
    pub header: u64,
    #[input]
    #[output]
    pub id: u32,
    #[inout(always)]
    pub other: u32,
}

fn main() {}
