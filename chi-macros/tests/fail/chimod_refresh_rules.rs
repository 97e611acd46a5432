//! A YAML that `cargo chimod refresh` rejects fails the build too
//! (`chimod/repo/names/`): `custom: 10` is a method key without its `k`, and
//! `module_name: my-names` is not an identifier. `#[chimod]` once compiled this
//! module, leaving `kCustom` out; it now runs refresh's rules and reports each
//! problem at the attribute, naming the file and line.

use chi_sdk::container::CreateCtx;

pub struct Names;

#[chi_sdk::chimod(yaml = "../chimod/repo/names/chimaera_mod.yaml")]
impl Names {
    fn create(_ctx: &mut CreateCtx<'_>, _args: &str) -> Result<Self, String> {
        Ok(Names)
    }
}

fn main() {}
