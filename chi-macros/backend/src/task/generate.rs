//! The expansion of a checked `#[task]` struct.

use std::path::Path;

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemStruct, LitInt};

use super::args::TaskArgs;
use super::fields::TaskField;
use crate::context::include_yaml;

/// The generated items for `item`, whose fields were read into `fields`, with
/// method id `method` (spanned at the attribute's id) and including the YAML
/// at `yaml` (if it exists). A field whose type was rejected is declared, and
/// left to a base `..unreachable!()` where a value is built; nothing else
/// touches it:
/// the crate does not build anyway, and its error is the only one.
pub(crate) fn task(
    item: &ItemStruct,
    fields: &[TaskField],
    args: &TaskArgs,
    method: u32,
    yaml: Option<&Path>,
) -> TokenStream {
    let p = quote!(::chi_sdk::__private);
    let name = &item.ident;
    let vis = &item.vis;
    let attrs = &item.attrs;
    let method = LitInt::new(&method.to_string(), args.method_lit.span());
    let new_fn = args
        .new_name
        .clone()
        .unwrap_or_else(|| quote::format_ident!("new"));

    let field_defs = fields.iter().map(|f| {
        let TaskField {
            attrs,
            vis,
            ident,
            ty,
            ..
        } = f;
        quote!(#(#attrs)* #vis #ident: #ty)
    });
    let include = yaml.filter(|p| p.is_file()).map(include_yaml);
    // Code after an `unreachable!()` (of a rejected field) is not linted.
    let allow_unreachable = fields
        .iter()
        .any(|f| !f.ok)
        .then(|| quote!(#[allow(unreachable_code)]));

    // Every use of a field's type is spanned at that type, so that a type that is
    // not `Ser` / `ShmSafe` is reported at the field (and identical reports merge).
    let per = |f: &TaskField, make: &dyn Fn(&Ident, &syn::Type) -> TokenStream| {
        let ty = &f.ty;
        let body = make(&f.ident, ty);
        quote_spanned!(ty.span()=> #body)
    };
    let each = |pick: fn(&TaskField) -> bool, make: &dyn Fn(&Ident, &syn::Type) -> TokenStream| {
        fields
            .iter()
            .filter(|f| f.ok && pick(f))
            .map(|f| per(f, make))
            .collect::<Vec<_>>()
    };
    // The values of the fields `pick` selects: `make`'s, and for rejected
    // ones a base `..unreachable!()` (the type of a rejected field appears in
    // no expression, so it is reported once, at the field).
    let values = |pick: fn(&TaskField) -> bool,
                  make: &dyn Fn(&Ident, &syn::Type) -> TokenStream| {
        let mut out = each(pick, make);
        if fields.iter().any(|f| !f.ok && pick(f)) {
            out.push(quote!(..::core::unreachable!()));
        }
        out
    };
    let any = |_: &TaskField| true;
    let is_in = |f: &TaskField| f.dir.is_in();
    let is_out = |f: &TaskField| f.dir.is_out();
    let only_out = |f: &TaskField| !f.dir.is_in();

    let frees = each(
        any,
        &|f, ty| quote!(<#ty as #p::Ser>::free_shm(&mut self.#f, alloc);),
    );
    let zero_all = values(any, &|f, ty| quote!(#f: <#ty as #p::Ser>::empty(),));
    let zero_outs = values(only_out, &|f, ty| quote!(#f: <#ty as #p::Ser>::empty(),));
    let save_ins = each(
        is_in,
        &|f, ty| quote!(<#ty as #p::Ser>::save(&self.#f, out)?;),
    );
    let load_ins = each(
        is_in,
        &|f, ty| quote!(<#ty as #p::Ser>::load(&mut self.#f, r, alloc)?;),
    );
    let save_outs = each(
        is_out,
        &|f, ty| quote!(<#ty as #p::Ser>::save(&self.#f, out)?;),
    );
    let load_outs = each(
        is_out,
        &|f, ty| quote!(<#ty as #p::Ser>::load(&mut self.#f, r, alloc)?;),
    );
    let collects = each(
        only_out,
        &|f, ty| quote!(<#ty as #p::Ser>::collect(&mut self.#f, &replica.#f, alloc)?;),
    );
    let copies = each(any, &|f, ty| {
        quote!(.and_then(|()| {
            copy.#f = <#ty as #p::Ser>::deep_copy(&self.#f, alloc)?;
            ::core::result::Result::Ok(())
        }))
    });

    let ins: Vec<&Ident> = fields
        .iter()
        .filter(|f| f.dir.is_in())
        .map(|f| &f.ident)
        .collect();
    let in_tys = fields.iter().filter(|f| f.dir.is_in()).map(|f| &f.ty);

    // Constructor parameters must not shadow a field parameter.
    let free_name = |base: &str| {
        let mut n = base.to_string();
        while ins.iter().any(|i| *i == n.as_str()) {
            n.insert(0, '_');
        }
        format_ident!("{n}")
    };
    let pool = free_name("pool");
    let query = free_name("query");

    let new_doc = format!(
        "A `{name}` for `{pool}`, sent to the containers `{query}` selects, with its input \
         fields; output fields start zero / empty."
    );
    let empty_doc = format!(
        "An empty `{name}` for `{pool}` (local domain query, every field zero / empty): \
         what `load_in` fills."
    );

    quote! {
        #(#attrs)*
        #[repr(C)]
        #vis struct #name {
            /// The task header (inserted by `#[task]`).
            pub header: #p::TaskHeader,
            #(#field_defs,)*
        }

        // Editing the YAML must rebuild the crate that checked against it.
        #include

        // SAFETY: repr(C) of a TaskHeader and of fields whose types are each
        // used as `Ser` below (in `free_fields`, for every field the macro
        // accepted), and `Ser` has `ShmSafe` as a supertrait.
        #[allow(clippy::undocumented_unsafe_blocks)]
        unsafe impl #p::ShmSafe for #name {}

        // SAFETY: repr(C) with the TaskHeader first; ShmSafe (above).
        #[allow(clippy::undocumented_unsafe_blocks)]
        unsafe impl #p::Task for #name {
            const METHOD: #p::MethodId = #method;

            #[inline]
            fn header(&self) -> &#p::TaskHeader {
                &self.header
            }

            #[inline]
            fn header_mut(&mut self) -> &mut #p::TaskHeader {
                &mut self.header
            }

            fn free_fields(&mut self, alloc: &#p::Allocator) {
                let _ = alloc;
                #(#frees)*
            }
        }

        // Constructors a crate may not call (e.g. `empty` outside the runtime).
        #[allow(dead_code)]
        #allow_unreachable
        impl #name {
            #[doc = #empty_doc]
            pub fn empty(#pool: #p::PoolId) -> Self {
                Self {
                    header: #p::TaskHeader::new(
                        #pool,
                        <Self as #p::Task>::METHOD,
                        ::core::mem::size_of::<Self>(),
                        #p::DomainQuery::local(),
                    ),
                    #(#zero_all)*
                }
            }

            #[doc = #new_doc]
            #[allow(clippy::too_many_arguments)]
            pub fn #new_fn(#pool: #p::PoolId, #query: #p::DomainQuery #(, #ins: #in_tys)*) -> Self {
                Self {
                    header: #p::TaskHeader::new(
                        #pool,
                        <Self as #p::Task>::METHOD,
                        ::core::mem::size_of::<Self>(),
                        #query,
                    ),
                    #( #ins, )*
                    #(#zero_outs)*
                }
            }
        }

        #allow_unreachable
        impl #p::TaskSer for #name {
            fn save_in(&self, out: &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), #p::SerError> {
                #p::save_header_in(&self.header, out)?;
                #(#save_ins)*
                ::core::result::Result::Ok(())
            }

            fn load_in(
                &mut self,
                r: &mut #p::Reader<'_>,
                alloc: &#p::Allocator,
            ) -> ::core::result::Result<(), #p::SerError> {
                #p::load_header_in(&mut self.header, r, alloc)?;
                #(#load_ins)*
                ::core::result::Result::Ok(())
            }

            fn save_out(&self, out: &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), #p::SerError> {
                #p::save_header_out(&self.header, out)?;
                #(#save_outs)*
                ::core::result::Result::Ok(())
            }

            fn load_out(
                &mut self,
                r: &mut #p::Reader<'_>,
                alloc: &#p::Allocator,
            ) -> ::core::result::Result<(), #p::SerError> {
                #p::load_header_out(&mut self.header, r, alloc)?;
                #(#load_outs)*
                ::core::result::Result::Ok(())
            }

            fn collect_outputs(
                &mut self,
                replica: &Self,
                alloc: &#p::Allocator,
            ) -> ::core::result::Result<(), #p::SerError> {
                let _ = (replica, alloc);
                #(#collects)*
                ::core::result::Result::Ok(())
            }

            fn new_copy(&self, alloc: &#p::Allocator) -> ::core::result::Result<Self, #p::SerError> {
                let mut copy = Self {
                    header: #p::copy_header(&self.header),
                    #(#zero_all)*
                };
                let res: ::core::result::Result<(), #p::SerError> = ::core::result::Result::Ok(())
                    #(#copies)*;
                match res {
                    ::core::result::Result::Ok(()) => ::core::result::Result::Ok(copy),
                    ::core::result::Result::Err(e) => {
                        <Self as #p::Task>::free_fields(&mut copy, alloc);
                        ::core::result::Result::Err(e)
                    }
                }
            }
        }
    }
}
