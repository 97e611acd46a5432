//! The calls of a task in its module's generated client.
//!
//! `#[task]` knows the fields; `#[chimod]` knows the client and the handler.
//! So `#[task]` leaves a hidden `macro_rules!` bridge beside the struct,
//! `__chi_calls_FooTask!(task type, client type, call name, async name)`,
//! which `#[chimod]` invokes (by the task type's path, with the bridge's name
//! in place of the type's) for each handler. The bridge expands to an inherent
//! impl of the client with the two calls, and to the task's `TaskOutputs`
//! impl; a task no handler serves, or one marked `client = false`, leaves
//! nothing (its bridge expands to nothing).
//!
//! Inside the bridge every name is absolute or reached through the task type
//! `#[chimod]` passes (`<$task as TaskField<N>>::Ty` for field `N`), since it
//! expands where the container is, not where the task is. Argument and result
//! types are spelled plainly for the field types everyone uses (integers,
//! `ShmString` → `&str`, `ClientBytes` → `&[u8]`, …) so that the calls read
//! well in the documentation, and through `CallArg` / `CallOutput` otherwise;
//! the conversions are checked against the field types either way.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, GenericArgument, Ident, ItemStruct, PathArguments, Type};

use super::fields::TaskField;

/// The bridge's name for task type `name`.
pub(crate) fn bridge_name(name: &Ident) -> Ident {
    format_ident!("__chi_calls_{}", name)
}

/// The bridge for `item` (of method `key`), whose fields were read into
/// `fields`; `enabled` false: a bridge that expands to nothing.
pub(crate) fn bridge(
    item: &ItemStruct,
    fields: &[TaskField],
    key: &str,
    new_fn: &Ident,
    enabled: bool,
) -> TokenStream {
    let name = &item.ident;
    let bridge = bridge_name(name);
    let sound = enabled && fields.iter().all(|f| f.ok);
    let body = if sound {
        calls(item, fields, key, new_fn)
    } else {
        TokenStream::new()
    };
    let outputs = sound.then(|| task_outputs(item, fields));
    let field_types = fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.ok)
        .map(|(i, f)| {
            let ty = &f.ty;
            quote! {
                #[doc(hidden)]
                impl ::chi_sdk::__private::TaskField<#i> for #name {
                    type Ty = #ty;
                }
            }
        });
    quote! {
        #(#field_types)*

        #outputs

        #[doc(hidden)]
        #[allow(unused_macros)]
        macro_rules! #bridge {
            ($task:ty, $client:ident, $call:ident, $submit:ident) => { #body };
        }
        #[doc(hidden)]
        #[allow(unused_imports)]
        pub(crate) use #bridge;
    }
}

/// The bridge's expansion: the client's two calls and `TaskOutputs`.
fn calls(item: &ItemStruct, fields: &[TaskField], key: &str, new_fn: &Ident) -> TokenStream {
    let p = quote!(::chi_sdk::__private);
    let field_ty = |i: usize| quote!(<$task as #p::TaskField<#i>>::Ty);

    let ins: Vec<(usize, &TaskField)> = fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.dir.is_in())
        .collect();
    let outs: Vec<(usize, &TaskField)> = fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.dir.is_out())
        .collect();
    let client = {
        let mut n = "client".to_string();
        while ins.iter().any(|(_, f)| f.ident == n.as_str()) {
            n.insert(0, '_');
        }
        Ident::new(&n, Span::call_site())
    };

    let params: Vec<TokenStream> = ins
        .iter()
        .map(|(i, f)| {
            let ident = &f.ident;
            let ty = arg_type(&f.ty).unwrap_or_else(|| {
                let ft = field_ty(*i);
                quote!(<#ft as ::chi_sdk::client::CallArg>::Arg<'_>)
            });
            quote!(#ident: #ty)
        })
        .collect();
    let names: Vec<&Ident> = ins.iter().map(|(_, f)| &f.ident).collect();
    // Each argument made in turn; a failure frees those made before it.
    let makes = ins.iter().enumerate().map(|(k, (i, f))| {
        let ident = &f.ident;
        let ft = field_ty(*i);
        let earlier = names[..k].iter().rev();
        quote! {
            let #ident = match #p::call_arg::<#ft>(#client, #ident) {
                ::core::result::Result::Ok(v) => v,
                ::core::result::Result::Err(e) => {
                    #( #p::call_discard(#client, #earlier); )*
                    return ::core::result::Result::Err(e);
                }
            };
        }
    });

    let out_types: Vec<TokenStream> = outs
        .iter()
        .map(|(i, f)| {
            output_type(&f.ty).unwrap_or_else(|| {
                let ft = field_ty(*i);
                quote!(<#ft as ::chi_sdk::client::CallOutput>::Output)
            })
        })
        .collect();
    let outputs_ty = match out_types.len() {
        1 => out_types[0].clone(),
        _ => quote!((#(#out_types,)*)),
    };

    let (call_doc, submit_doc) = docs(item, fields, key);
    quote! {
        impl $client {
            #[doc = #call_doc]
            #[allow(clippy::too_many_arguments)]
            pub fn $call(
                &self,
                #client: &#p::Client,
                #(#params,)*
            ) -> ::core::result::Result<#outputs_ty, #p::CallError> {
                self.$submit(#client, #(#names),*)?.output()
            }

            #[doc = #submit_doc]
            #[allow(clippy::too_many_arguments)]
            pub fn $submit<'c>(
                &self,
                #client: &'c #p::Client,
                #(#params,)*
            ) -> ::core::result::Result<#p::Pending<'c, $task>, #p::CallError> {
                #(#makes)*
                #client.submit(
                    <$task>::#new_fn(self.pool, self.query, #(#names),*),
                    self.priority,
                )
            }
        }
    }
}

/// `TaskOutputs` of the task: its output fields, copied out.
fn task_outputs(item: &ItemStruct, fields: &[TaskField]) -> TokenStream {
    let p = quote!(::chi_sdk::__private);
    let name = &item.ident;
    let outs: Vec<&TaskField> = fields.iter().filter(|f| f.dir.is_out()).collect();
    let tys: Vec<TokenStream> = outs
        .iter()
        .map(|f| {
            let ty = &f.ty;
            quote_spanned!(ty.span()=> <#ty as ::chi_sdk::client::CallOutput>::Output)
        })
        .collect();
    let values: Vec<TokenStream> = outs
        .iter()
        .map(|f| {
            let ident = &f.ident;
            quote!(#p::call_output(client, &self.#ident)?)
        })
        .collect();
    let (ty, value) = match outs.len() {
        1 => {
            let ident = &outs[0].ident;
            (
                tys[0].clone(),
                quote!(#p::call_output(client, &self.#ident)),
            )
        }
        _ => (
            quote!((#(#tys,)*)),
            quote!(::core::result::Result::Ok((#(#values,)*))),
        ),
    };
    quote! {
        impl #p::TaskOutputs for #name {
            type Outputs = #ty;

            fn outputs(
                &self,
                client: &#p::Client,
            ) -> ::core::result::Result<Self::Outputs, #p::CallError> {
                let _ = client;
                #value
            }
        }
    }
}

/// The documentation of the two calls: the task's first paragraph, then the
/// arguments and the result with their fields' documentation.
fn docs(item: &ItemStruct, fields: &[TaskField], key: &str) -> (String, String) {
    let name = &item.ident;
    let summary = doc_text(&item.attrs);
    let summary = summary.split("\n\n").next().unwrap_or("").trim();
    let line = |f: &TaskField| {
        let doc = doc_text(&f.attrs);
        let doc = doc.trim().replace('\n', " ");
        if doc.is_empty() {
            format!("`{}`", f.ident)
        } else {
            format!("`{}`: {doc}", f.ident)
        }
    };
    let ins: Vec<String> = fields
        .iter()
        .filter(|f| f.dir.is_in())
        .map(|f| {
            let how = match last_ident(&f.ty).as_deref() {
                Some("ClientBuf") => {
                    " (the argument is the capacity to allocate; 0: the module grows it)"
                }
                _ => "",
            };
            format!("* {}{how}", line(f))
        })
        .collect();
    let outs: Vec<String> = fields
        .iter()
        .filter(|f| f.dir.is_out())
        .map(|f| format!("* {}", line(f)))
        .collect();
    let mut more = String::new();
    if !ins.is_empty() {
        more += &format!("\n\nArguments:\n\n{}", ins.join("\n"));
    }
    match outs.len() {
        0 => more += "\n\nReturns `()` once the task completed.",
        1 => more += &format!("\n\nReturns the output {}", &outs[0][2..]),
        _ => more += &format!("\n\nReturns, as a tuple:\n\n{}", outs.join("\n")),
    }
    more += "\n\nA failure of the method is `CallError::Task`, with its code and message.";
    let mut call = format!("Calls `{key}` and waits for its outputs.{more}");
    if !summary.is_empty() {
        call = format!("{summary}\n\n{call}");
    }
    let submit = format!(
        "Submits `{key}` (a `{name}`) without waiting: \
         [`Pending::output`](::chi_sdk::client::Pending::output) returns what the synchronous \
         call returns. The `Pending` owns the task and the buffers it names.{more}"
    );
    (call, submit)
}

/// The text of the `#[doc]` attributes in `attrs`.
fn doc_text(attrs: &[syn::Attribute]) -> String {
    let mut out = String::new();
    for a in attrs {
        if !a.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &a.meta
            && let Expr::Lit(l) = &nv.value
            && let syn::Lit::Str(s) = &l.lit
        {
            let v = s.value();
            out.push_str(v.strip_prefix(' ').unwrap_or(&v));
            out.push('\n');
        }
    }
    out
}

/// The last identifier of a path type (`chi_sdk::shm::ShmString` → `ShmString`).
fn last_ident(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

/// Whether `ty` is a primitive number type written bare.
fn primitive(ty: &Type) -> bool {
    const PRIMS: [&str; 14] = [
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "f32", "f64",
    ];
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.get_ident().is_some_and(|i| PRIMS.contains(&i.to_string().as_str())))
}

/// `[prim; literal]`.
fn plain_array(ty: &Type) -> bool {
    matches!(ty, Type::Array(a) if (primitive(&a.elem) || plain_array(&a.elem)) && matches!(a.len, Expr::Lit(_)))
}

/// The element type of `ShmVec<prim>`.
fn shm_vec_of(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != "ShmVec" {
        return None;
    }
    let PathArguments::AngleBracketed(a) = &seg.arguments else {
        return None;
    };
    match a.args.first() {
        Some(GenericArgument::Type(t)) if a.args.len() == 1 && primitive(t) => Some(t),
        _ => None,
    }
}

/// The argument type spelled plainly, for the field types everyone uses.
fn arg_type(ty: &Type) -> Option<TokenStream> {
    if primitive(ty) || plain_array(ty) {
        return Some(quote!(#ty));
    }
    if let Some(t) = shm_vec_of(ty) {
        return Some(quote!(&[#t]));
    }
    match last_ident(ty)?.as_str() {
        "ShmString" | "ClientStr" => Some(quote!(&str)),
        "ClientBytes" => Some(quote!(&[u8])),
        "ClientBuf" => Some(quote!(usize)),
        _ => None,
    }
}

/// The result type spelled plainly, for the field types everyone uses.
fn output_type(ty: &Type) -> Option<TokenStream> {
    if primitive(ty) || plain_array(ty) {
        return Some(quote!(#ty));
    }
    if let Some(t) = shm_vec_of(ty) {
        return Some(quote!(::std::vec::Vec<#t>));
    }
    match last_ident(ty)?.as_str() {
        "ShmString" | "ClientStr" => Some(quote!(::std::string::String)),
        "ClientBytes" | "ClientBuf" => Some(quote!(::std::vec::Vec<u8>)),
        _ => None,
    }
}
