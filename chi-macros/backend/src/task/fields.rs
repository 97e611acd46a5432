//! The fields of a task: their direction (`#[input]`, `#[output]`, `#[inout]`)
//! and the syntactic check of their types against `ShmSafe`.
//!
//! Types that are well known not to belong in shared memory (`String`, `Vec`,
//! `Box`, references, pointers, `bool`…) are recognised by their spelling, for a
//! message that says what to use instead. Every other type is checked by the
//! compiler through a trait bound spanned at the field (see `gen`).

use syn::spanned::Spanned;
use syn::{Attribute, Field, GenericArgument, Ident, PathArguments, Type, TypePath, Visibility};

use crate::diag::show;

/// Which way a field travels.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dir {
    /// Written by the client, read by the runtime (`#[input]`, the default).
    In,
    /// Written by the runtime (`#[output]`).
    Out,
    /// Both (`#[inout]`).
    InOut,
}

impl Dir {
    /// Whether the field is saved by `save_in`.
    pub fn is_in(self) -> bool {
        matches!(self, Dir::In | Dir::InOut)
    }
    /// Whether the field is saved by `save_out`.
    pub fn is_out(self) -> bool {
        matches!(self, Dir::Out | Dir::InOut)
    }
}

/// One parameter of a task.
#[derive(Debug)]
pub(crate) struct TaskField {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
    pub ty: Type,
    pub dir: Dir,
    /// Whether the type passed the syntactic check: a rejected type (reported
    /// at the field) keeps the field in the struct, but nothing generated
    /// saves, loads, copies, frees or checks it, so it is reported once.
    pub ok: bool,
}

const DIRECTIONS: [(&str, Dir); 3] = [
    ("input", Dir::In),
    ("output", Dir::Out),
    ("inout", Dir::InOut),
];

/// Whether `attr` is one of the direction attributes.
pub(crate) fn is_direction(attr: &Attribute) -> bool {
    DIRECTIONS.iter().any(|(n, _)| attr.path().is_ident(n))
}

/// Reads a named field: its direction and its type's check. Problems go to
/// `errors`. A field named `header` is reported and left out (the macro
/// inserts the header).
pub(crate) fn task_field(field: &Field, errors: &mut Vec<syn::Error>) -> Option<TaskField> {
    let ident = field.ident.clone()?;
    let mut dir: Option<Dir> = None;
    let mut attrs = Vec::new();
    for attr in &field.attrs {
        let Some(&(name, d)) = DIRECTIONS.iter().find(|(n, _)| attr.path().is_ident(n)) else {
            attrs.push(attr.clone());
            continue;
        };
        if let Err(e) = attr.meta.require_path_only() {
            errors.push(syn::Error::new(
                e.span(),
                format!("`#[{name}]` takes no arguments"),
            ));
        }
        if dir.is_some() {
            errors.push(syn::Error::new(
                attr.span(),
                "a field has one direction: `#[input]` (the default), `#[output]` or `#[inout]`",
            ));
        }
        dir = Some(d);
    }
    if ident == "header" {
        errors.push(syn::Error::new(
            ident.span(),
            "#[task] inserts `pub header: chi_sdk::task::TaskHeader` as the first field itself; \
             remove this field or rename it",
        ));
        return None;
    }
    let before = errors.len();
    check_type(&field.ty, errors);
    Some(TaskField {
        ok: errors.len() == before,
        attrs,
        vis: field.vis.clone(),
        ident,
        ty: field.ty.clone(),
        dir: dir.unwrap_or(Dir::In),
    })
}

/// Reports, at its span, each part of `ty` that is known not to be `ShmSafe`.
pub(crate) fn check_type(ty: &Type, errors: &mut Vec<syn::Error>) {
    if let Some(why) = forbidden(ty) {
        // `new_spanned` covers the whole type (a joined span needs nightly).
        errors.push(syn::Error::new_spanned(ty, why));
        return;
    }
    match ty {
        Type::Array(a) => check_type(&a.elem, errors),
        Type::Group(g) => check_type(&g.elem, errors),
        Type::Paren(p) => check_type(&p.elem, errors),
        Type::Path(p) => {
            for seg in &p.path.segments {
                if let PathArguments::AngleBracketed(args) = &seg.arguments {
                    for arg in &args.args {
                        if let GenericArgument::Type(t) = arg {
                            check_type(t, errors);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

const NOT_HERE: &str = "cannot be a task field";
const ADDRESS: &str = "it holds an address in this process, and other processes map shared \
                       memory elsewhere";

/// Why `ty` cannot live in shared memory, if it is a well-known case.
fn forbidden(ty: &Type) -> Option<String> {
    let shown = show(ty);
    Some(match ty {
        Type::Reference(_) => format!(
            "`{shown}` {NOT_HERE}: a reference is an address in this process, and other \
             processes map shared memory elsewhere; store the value itself, a \
             `chi_sdk::shm::ShmString` / `chi_sdk::shm::ShmVec<T>`, or a `chi_sdk::shm::ShmPtr`"
        ),
        Type::Ptr(_) => format!(
            "`{shown}` {NOT_HERE}: a raw pointer is an address in this process; use \
             `chi_sdk::shm::ShmPtr` (a segment id and an offset, valid in every process)"
        ),
        Type::BareFn(_) => format!(
            "`{shown}` {NOT_HERE}: a function pointer is an address in this process; store a \
             method id or an integer tag instead"
        ),
        Type::Slice(_) => format!(
            "`{shown}` {NOT_HERE}: a slice has no fixed size; use `chi_sdk::shm::ShmVec<T>` or an \
             array `[T; N]`"
        ),
        Type::TraitObject(_) | Type::ImplTrait(_) => format!(
            "`{shown}` {NOT_HERE}: a trait object carries a vtable address of this process; use a \
             concrete `#[repr(C)]` type"
        ),
        Type::Tuple(t) if !t.elems.is_empty() => format!(
            "`{shown}` {NOT_HERE}: tuples have no layout that separately compiled code agrees \
             on; use a `#[repr(C)]` struct that implements `ShmSafe`"
        ),
        Type::Path(p) => return forbidden_path(p, &shown),
        _ => return None,
    })
}

fn forbidden_path(p: &TypePath, shown: &str) -> Option<String> {
    if p.qself.is_some() {
        return None;
    }
    let segs = &p.path.segments;
    let last = segs.last()?;
    // Only the standard library's types: a module may have its own `Entry`.
    let std_path = segs.len() == 1
        || matches!(
            segs.first().map(|s| s.ident.to_string()).as_deref(),
            Some("std" | "alloc" | "core")
        );
    if !std_path {
        return None;
    }
    let arg = first_type_arg(&last.arguments).map(show);
    let t = arg.as_deref().unwrap_or("T");
    let name = last.ident.to_string();
    Some(match name.as_str() {
        "String" => format!(
            "`{shown}` {NOT_HERE}: its bytes are in this process's heap, which other processes \
             cannot see; use `chi_sdk::shm::ShmString` (short text) or \
             `chi_sdk::bytes::ClientStr` (text of any size, in the client-data segment)"
        ),
        "str" => format!("`{shown}` {NOT_HERE}: use `chi_sdk::shm::ShmString`"),
        "Vec" if t == "u8" => format!(
            "`{shown}` {NOT_HERE}: its elements are in this process's heap, which other processes \
             cannot see; use `chi_sdk::bytes::ClientBytes` (bytes in), \
             `chi_sdk::bytes::ClientBuf` (bytes out) or `chi_sdk::shm::ShmVec<u8>`"
        ),
        "Vec" => format!(
            "`{shown}` {NOT_HERE}: its elements are in this process's heap, which other processes \
             cannot see; use `chi_sdk::shm::ShmVec<{t}>`"
        ),
        "VecDeque" | "HashMap" | "BTreeMap" | "HashSet" | "BTreeSet" | "LinkedList"
        | "BinaryHeap" => format!(
            "`{shown}` {NOT_HERE}: {ADDRESS}; use a `chi_sdk::shm::ShmVec` of `#[repr(C)]` entries"
        ),
        "Box" => format!(
            "`{shown}` {NOT_HERE}: {ADDRESS}; store the `{t}` inline, or allocate it in a segment \
             and store a `chi_sdk::shm::ShmPtr`"
        ),
        "Rc" | "Arc" | "Weak" | "Cow" | "NonNull" | "PhantomPinned" => format!(
            "`{shown}` {NOT_HERE}: {ADDRESS}; store the `{t}` inline, or a `chi_sdk::shm::ShmPtr`"
        ),
        "bool" => format!(
            "`{shown}` {NOT_HERE}: only the bytes 0 and 1 are valid `bool`s, and another process \
             may write any byte; use `u8` (0 = false, 1 = true) and test it with `!= 0`"
        ),
        "char" => format!(
            "`{shown}` {NOT_HERE}: not every `u32` is a valid `char`, and another process may \
             write any value; use `u32` and convert with `char::from_u32`"
        ),
        "AtomicBool" => format!(
            "`{shown}` {NOT_HERE}: only the bytes 0 and 1 are valid; use \
             `std::sync::atomic::AtomicU8`"
        ),
        "Option" => format!(
            "`{shown}` {NOT_HERE}: its layout is not fixed across separately compiled code, and \
             not every bit pattern is valid; store the `{t}` with a `u8` flag beside it (or \
             `ShmPtr::NULL` for \"no pointer\")"
        ),
        n if n.starts_with("NonZero") => format!(
            "`{shown}` {NOT_HERE}: zero is not a valid `{n}`, and another process may write it; \
             use the plain integer"
        ),
        _ => return None,
    })
}

fn first_type_arg(args: &PathArguments) -> Option<&Type> {
    match args {
        PathArguments::AngleBracketed(a) => a.args.iter().find_map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    fn errors_of(ty: Type) -> Vec<String> {
        let mut errors = Vec::new();
        check_type(&ty, &mut errors);
        errors.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn well_known_types_are_rejected_with_a_replacement() {
        let cases: [(Type, &str); 10] = [
            (parse_quote!(String), "use `chi_sdk::shm::ShmString`"),
            (parse_quote!(Vec<u8>), "use `chi_sdk::bytes::ClientBytes`"),
            (
                parse_quote!(std::string::String),
                "use `chi_sdk::shm::ShmString`",
            ),
            (parse_quote!(Vec<u32>), "use `chi_sdk::shm::ShmVec<u32>`"),
            (parse_quote!(Box<u64>), "store the `u64` inline"),
            (parse_quote!(&'static str), "a reference is an address"),
            (parse_quote!(*const u8), "use `chi_sdk::shm::ShmPtr`"),
            (parse_quote!(bool), "use `u8`"),
            (parse_quote!(char), "use `u32`"),
            (parse_quote!((u32, u64)), "tuples"),
        ];
        for (ty, want) in cases {
            let e = errors_of(ty.clone());
            assert_eq!(e.len(), 1, "{}: {e:?}", show(&ty));
            assert!(e[0].contains(want), "{}: {}", show(&ty), e[0]);
        }
    }

    #[test]
    fn nested_types_are_checked() {
        let e = errors_of(parse_quote!(ShmVec<String>));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("`String` cannot be a task field"),
            "{}",
            e[0]
        );
        let e = errors_of(parse_quote!([bool; 4]));
        assert!(e[0].starts_with("`bool`"), "{}", e[0]);
    }

    #[test]
    fn other_types_are_left_to_the_compiler() {
        for ty in [
            parse_quote!(u64),
            parse_quote!(ShmString),
            parse_quote!(chi_sdk::shm::ShmVec<u8>),
            parse_quote!(my::String),
            parse_quote!([u8; 16]),
            parse_quote!(()),
        ] {
            assert!(errors_of(ty).is_empty());
        }
    }
}
