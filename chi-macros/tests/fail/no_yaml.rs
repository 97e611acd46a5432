// trybuild's generated crate has no chimaera_mod.yaml beside its Cargo.toml.
#[chi_sdk::task(method = 10)]
pub struct CustomTask {
    pub id: u32,
}

#[chi_sdk::task(method = 10, yaml = "missing/chimaera_mod.yaml")]
pub struct Custom;

pub struct M;

#[chi_sdk::chimod(yaml = "missing/chimaera_mod.yaml")]
impl M {
    fn create(_ctx: &mut chi_sdk::container::CreateCtx<'_>, _args: &str) -> Result<Self, String> {
        Ok(M)
    }
}

fn main() {}
