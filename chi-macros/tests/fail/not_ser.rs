use chi_sdk::shm::ShmSafe;

/// Shared-memory safe, but without `Ser`: the task could not be saved or copied.
#[repr(C)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
}

// SAFETY: repr(C) of two u64.
unsafe impl ShmSafe for Extent {}

#[chi_sdk::task(method = 10, yaml = "../chimaera_mod.yaml")]
pub struct CustomTask {
    pub extent: Extent,
}

fn main() {}
