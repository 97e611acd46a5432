// A missing `yaml = "…"` file. (A crate without chimaera_mod.yaml beside its
// Cargo.toml is covered by the backend's unit tests: its message names the
// absolute path of the crate, which depends on where the target directory is.)
//
//

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
