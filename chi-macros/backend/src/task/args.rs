//! The arguments of `#[task(...)]`: `method = N`, `name = "kFoo"`, `yaml = "path"`,
//! `new = "name"`, `client = false`.

use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Lit, LitInt, LitStr, UnOp};

use crate::diag::combine;
use crate::names::is_method_key;

/// Parsed `#[task(...)]` arguments.
#[derive(Debug)]
pub(crate) struct TaskArgs {
    /// The method id.
    pub method: u32,
    /// Its literal (errors about the id point here).
    pub method_lit: LitInt,
    /// `name = "kBar"`: the YAML key, instead of the one derived from the struct.
    pub name: Option<LitStr>,
    /// `yaml = "path"`: the YAML file, relative to the source file.
    pub yaml: Option<LitStr>,
    /// `new = "name"`: the name of the emplace constructor (default `new`), for
    /// a type that keeps a hand-written `new`.
    pub new_name: Option<syn::Ident>,
    /// `client = false`: the module's generated client has no calls of this
    /// task (its author writes them).
    pub client: bool,
}

const USAGE: &str = "expected `#[task(method = N)]`, optionally with `name = \"kFoo\"`, \
                     `yaml = \"path/to/chimaera_mod.yaml\"`, `new = \"constructor_name\"` and \
                     `client = false`";

/// Parses the attribute's tokens; every problem is reported, combined.
pub(crate) fn parse(attr: TokenStream) -> syn::Result<TaskArgs> {
    let mut errors: Vec<syn::Error> = Vec::new();
    let mut method: Option<(u32, LitInt)> = None;
    let mut name: Option<LitStr> = None;
    let mut yaml: Option<LitStr> = None;
    let mut new_name: Option<syn::Ident> = None;
    let mut client: Option<syn::LitBool> = None;
    let mut seen_method = false;

    let parser = syn::meta::parser(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        let dup = |what: &str| meta.error(format!("`{what}` is given twice; give it once"));
        match key.as_str() {
            "method" => {
                if seen_method {
                    errors.push(dup("method"));
                }
                seen_method = true;
                let expr: Expr = meta.value()?.parse()?;
                match method_id(&expr) {
                    Ok(m) => method = Some(m),
                    Err(e) => errors.push(e),
                }
            }
            "name" => {
                if name.is_some() {
                    errors.push(dup("name"));
                }
                let lit: LitStr = meta.value()?.parse()?;
                if !is_method_key(&lit.value()) {
                    errors.push(syn::Error::new(
                        lit.span(),
                        format!(
                            "`{}` is not a method key: keys of chimaera_mod.yaml are `k` followed by \
                             the method's name, e.g. \"kCustom\"",
                            lit.value()
                        ),
                    ));
                }
                name = Some(lit);
            }
            "yaml" => {
                if yaml.is_some() {
                    errors.push(dup("yaml"));
                }
                yaml = Some(meta.value()?.parse()?);
            }
            "new" => {
                if new_name.is_some() {
                    errors.push(dup("new"));
                }
                let lit: LitStr = meta.value()?.parse()?;
                match syn::parse_str::<syn::Ident>(&lit.value()) {
                    Ok(id) if id == "empty" => errors.push(syn::Error::new(
                        lit.span(),
                        "`empty` is the other constructor #[task] generates (a task with every \
                         field zero / empty); give the emplace constructor another name, e.g. \
                         `new = \"emplace\"`",
                    )),
                    Ok(mut id) => {
                        id.set_span(lit.span());
                        new_name = Some(id);
                    }
                    Err(_) => errors.push(syn::Error::new(
                        lit.span(),
                        format!(
                            "`{}` is not a function name: `new = \"…\"` names the emplace \
                             constructor (default `new`), e.g. `new = \"emplace\"`",
                            lit.value()
                        ),
                    )),
                }
            }
            "client" => {
                if client.is_some() {
                    errors.push(dup("client"));
                }
                match meta.value()?.parse::<syn::Lit>()? {
                    syn::Lit::Bool(b) => client = Some(b),
                    other => errors.push(syn::Error::new(
                        other.span(),
                        "`client` takes `true` or `false`: `client = false` leaves this task's \
                         calls out of the module's generated client",
                    )),
                }
            }
            _ => {
                // Skip a value so that later arguments are still parsed.
                if let Ok(v) = meta.value() {
                    let _: Expr = v.parse()?;
                }
                errors.push(syn::Error::new(
                    meta.path.span(),
                    format!(
                        "unknown argument `{}` of #[task]; {USAGE}",
                        meta.path
                            .get_ident()
                            .map(ToString::to_string)
                            .unwrap_or_else(|| "?".into())
                    ),
                ));
            }
        }
        Ok(())
    });
    syn::parse::Parser::parse2(parser, attr)?;

    if !seen_method {
        errors.push(syn::Error::new(
            Span::call_site(),
            format!(
                "#[task] needs the method id: {USAGE}; N is the task's id in \
                 chimaera_mod.yaml (0 = kCreate, 1 = kDestroy, custom methods from 10)"
            ),
        ));
    }
    if let Some(e) = combine(errors) {
        return Err(e);
    }
    let Some((method, method_lit)) = method else {
        // Unreachable: a `method` that did not parse left an error above.
        return Err(syn::Error::new(Span::call_site(), USAGE));
    };
    Ok(TaskArgs {
        method,
        method_lit,
        name,
        yaml,
        new_name,
        client: client.is_none_or(|b| b.value),
    })
}

/// The id from `N`; negative and non-literal ids are errors.
fn method_id(expr: &Expr) -> syn::Result<(u32, LitInt)> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => match lit.base10_parse::<u32>() {
            Ok(m) => Ok((m, lit.clone())),
            Err(_) => Err(syn::Error::new(
                lit.span(),
                format!("method id `{lit}` does not fit in a u32"),
            )),
        },
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => Err(syn::Error::new(
            expr.span(),
            "a negative id marks an unsupported method in chimaera_mod.yaml; a task needs the \
             id its method has there (0 or more)",
        )),
        _ => Err(syn::Error::new(
            expr.span(),
            "the method id must be an integer literal, e.g. `method = 10`, equal to the task's \
             id in chimaera_mod.yaml",
        )),
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    #[test]
    fn parses_all_arguments() {
        let a = parse(quote!(
            method = 12,
            name = "kBar",
            yaml = "x.yaml",
            new = "emplace"
        ))
        .unwrap();
        assert_eq!(a.method, 12);
        assert_eq!(a.name.unwrap().value(), "kBar");
        assert_eq!(a.yaml.unwrap().value(), "x.yaml");
        assert_eq!(a.new_name.unwrap(), "emplace");
        assert!(parse(quote!(method = 12)).unwrap().new_name.is_none());
    }

    #[test]
    fn bad_new_values() {
        let msgs = |attr| -> Vec<String> {
            parse(attr)
                .unwrap_err()
                .into_iter()
                .map(|e| e.to_string())
                .collect()
        };
        let e = msgs(quote!(method = 10, new = "1st"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "`1st` is not a function name: `new = \"…\"` names the emplace constructor"
            ),
            "{e:?}"
        );
        let e = msgs(quote!(method = 10, new = "fn"));
        assert!(e[0].starts_with("`fn` is not a function name"), "{e:?}");
        let e = msgs(quote!(method = 10, new = "empty"));
        assert!(
            e[0].starts_with("`empty` is the other constructor"),
            "{e:?}"
        );
        let e = msgs(quote!(method = 10, new = "a", new = "b"));
        assert!(e[0].contains("`new` is given twice"), "{e:?}");
        let e = parse(quote!(method = 10, new = emplace)).unwrap_err();
        assert!(e.to_string().contains("expected string literal"), "{e}");
    }

    #[test]
    fn reports_every_problem_at_once() {
        let e = parse(quote!(method = -1, name = "bar", colour = 3)).unwrap_err();
        let msgs: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[0].contains("negative id"));
        assert!(msgs[1].contains("not a method key"));
        assert!(msgs[2].contains("unknown argument `colour`"));
    }

    #[test]
    fn method_is_required() {
        let e = parse(quote!()).unwrap_err();
        assert!(e.to_string().contains("needs the method id"), "{e}");
        let e = parse(quote!(name = "kFoo")).unwrap_err();
        assert!(e.to_string().contains("needs the method id"), "{e}");
    }
}
