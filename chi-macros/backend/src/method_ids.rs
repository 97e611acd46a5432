//! A module's method id constants, generated from its `chimaera_mod.yaml`.
//!
//! `#[chimod]` puts them in the `method` module beside the container;
//! `method_ids!(yaml = "…")` emits the same items for a crate that has the
//! YAML but not the container (chi-sdk's admin tasks, whose container is
//! linked into the runtime), so no crate writes its ids by hand:
//!
//! * one `pub const FOO_BAR: u32` per supported key `kFooBar`, documented with
//!   the key and the YAML comment after its id;
//! * `pub const ALL: &[(&str, i64)]`: every key with its id, `-1` included.
//!
//! `method_ids!` checks the YAML with the same rules as `#[chimod]`
//! ([`crate::check`]) and includes its bytes, so editing it rebuilds.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::LitStr;

use crate::check::{Method, check_module_file};
use crate::context::{Context, include_yaml, load_error, yaml_path};
use crate::diag::combine;

/// The constants of `methods` (see the module doc).
pub(crate) fn constants(methods: &[Method]) -> TokenStream {
    let consts = methods.iter().filter(|m| m.supported()).map(|m| {
        let c = format_ident!("{}", m.constant());
        let id = m.id as u32;
        let doc = match &m.comment {
            Some(text) => format!(" `{}` in chimaera_mod.yaml: {text}", m.key),
            None => format!(" `{}` in chimaera_mod.yaml.", m.key),
        };
        quote!(#[doc = #doc] pub const #c: u32 = #id;)
    });
    let all = methods.iter().map(|m| {
        let k = &m.key;
        let id = m.id;
        quote!((#k, #id))
    });
    quote! {
        #(#consts)*
        /// Every method key with its id (`-1` = unsupported).
        pub const ALL: &[(&str, i64)] = &[#(#all),*];
    }
}

/// Expands `method_ids!(input)` in `ctx`: `input` is empty (the crate's own
/// `chimaera_mod.yaml`) or `yaml = "path"`, relative to the calling file.
pub(crate) fn expand(input: TokenStream, ctx: &Context) -> syn::Result<TokenStream> {
    let arg = parse_args(input, "method_ids!")?;
    let path = yaml_path(arg.as_ref(), ctx)?;
    let module = check_module_file(&path).map_err(|e| {
        load_error(
            &e,
            arg.as_ref(),
            "method_ids! reads the module's methods from it",
        )
    })?;
    let at = arg.as_ref().map_or(Span::call_site(), LitStr::span);
    if let Some(e) = combine(module.problems.iter().map(|p| p.at(at)).collect()) {
        return Err(e);
    }
    let consts = constants(&module.methods);
    let includes = std::iter::once(&module.path)
        .chain(&module.repo_path)
        .chain(&module.lock_path)
        .map(|p| include_yaml(p));
    Ok(quote! {
        #consts
        #(#includes)*
    })
}

/// `yaml = "…"`, the only argument (optional) of `method_ids!` and of
/// `#[chimod]` (`what`, for messages).
pub(crate) fn parse_args(input: TokenStream, what: &str) -> syn::Result<Option<LitStr>> {
    let mut yaml = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("yaml") && yaml.is_none() {
            yaml = Some(meta.value()?.parse::<LitStr>()?);
            Ok(())
        } else if meta.path.is_ident("yaml") {
            Err(meta.error("`yaml` is given twice; give it once"))
        } else {
            Err(meta.error(format!(
                "unknown argument of {what}; the only one is `yaml = \"path/to/chimaera_mod.yaml\"`"
            )))
        }
    });
    syn::parse::Parser::parse2(parser, input)?;
    Ok(yaml)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn constants_of_supported_methods_and_all_keys() {
        let y = crate::yaml::ModYaml::parse(
            Path::new("m.yaml"),
            "module_name: m\nnamespace: a\nkCreate: 0\nkGone: -1\nkEcho: 14  # Echoes a value\n",
        )
        .unwrap();
        let c = crate::check::check_module(&y, None);
        assert_eq!(
            constants(&c.methods).to_string(),
            quote! {
                #[doc = " `kCreate` in chimaera_mod.yaml."] pub const CREATE: u32 = 0u32;
                #[doc = " `kEcho` in chimaera_mod.yaml: Echoes a value"] pub const ECHO: u32 = 14u32;
                /// Every method key with its id (`-1` = unsupported).
                pub const ALL: &[(&str, i64)] = &[("kCreate", 0i64), ("kEcho", 14i64), ("kGone", -1i64)];
            }
            .to_string()
        );
    }

    #[test]
    fn arguments() {
        assert!(parse_args(quote!(), "m!").unwrap().is_none());
        assert_eq!(
            parse_args(quote!(yaml = "x.yaml"), "m!")
                .unwrap()
                .unwrap()
                .value(),
            "x.yaml"
        );
        let e = parse_args(quote!(colour = 1), "m!").unwrap_err();
        assert!(e.to_string().contains("unknown argument"), "{e}");
    }

    #[test]
    fn problems_fail_the_expansion() {
        let dir = std::env::temp_dir().join(format!("chi-method-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("chimaera_mod.yaml"),
            "module_name: m\nnamespace: a\nkCreate: 0\ncustom: 10\n",
        )
        .unwrap();
        let ctx = Context {
            manifest_dir: Some(dir.clone()),
            source_file: None,
        };
        let e = expand(quote!(), &ctx).unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown key `custom` (did you mean `kCustom`?)"),
            "{e}"
        );
        std::fs::write(
            dir.join("chimaera_mod.yaml"),
            "module_name: m\nnamespace: a\nkCreate: 0\nkCustom: 10\n",
        )
        .unwrap();
        let out = expand(quote!(), &ctx).unwrap().to_string();
        assert!(out.contains("pub const CUSTOM : u32 = 10u32"), "{out}");
        assert!(out.contains("include_bytes !"), "{out}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
