//! Unit tests of `#[task]`: the full expansion of a small struct, compared as
//! tokens, and each diagnostic.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use proc_macro2::TokenStream;
use quote::quote;

use crate::context::Context;

const YAML: &str = "module_name: t\nkCreate: 0\nkDestroy: 1\nkRecover: -1\nkPing: 10\nkPong: 11\n";

/// A directory holding `chimaera_mod.yaml` with `text`, removed on drop.
struct TempMod(PathBuf);

impl TempMod {
    fn new(text: &str) -> TempMod {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "chi-macros-backend-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("chimaera_mod.yaml"), text).unwrap();
        TempMod(dir)
    }

    fn ctx(&self) -> Context {
        Context {
            manifest_dir: Some(self.0.clone()),
            source_file: Some(self.0.join("src/lib.rs")),
        }
    }

    fn yaml(&self) -> PathBuf {
        self.0.join("chimaera_mod.yaml")
    }
}

impl Drop for TempMod {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn expand(m: &TempMod, attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    super::expand(attr, item, &m.ctx()).into_result()
}

fn error(m: &TempMod, attr: TokenStream, item: TokenStream) -> Vec<String> {
    expand(m, attr, item)
        .expect_err("expected an error")
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

/// What `#[task(method = 10)] pub struct PingTask { pub seq: u64, #[output] pub reply: u64 }`
/// expands to, for the YAML at `yaml`.
fn expected_ping(yaml: &Path) -> TokenStream {
    let yaml = yaml.display().to_string();
    let returns = "Arguments:\n\n* `seq`\n\nReturns the output `reply`: Reply.\n\nA failure of \
                   the method is `CallError::Task`, with its code and message.";
    let call_doc = format!("Ping.\n\nCalls `kPing` and waits for its outputs.\n\n{returns}");
    let submit_doc = format!(
        "Submits `kPing` (a `PingTask`) without waiting: \
         [`Pending::output`](::chi_sdk::client::Pending::output) returns what the synchronous \
         call returns. The `Pending` owns the task and the buffers it names.\n\n{returns}"
    );
    quote! {
        /// Ping.
        #[repr(C)]
        pub struct PingTask {
            /// The task header (inserted by `#[task]`).
            pub header: ::chi_sdk::__private::TaskHeader,
            pub seq: u64,
            /// Reply.
            pub reply: u64,
        }

        const _: &[u8] = include_bytes!(#yaml);


        #[allow(clippy::undocumented_unsafe_blocks)]
        unsafe impl ::chi_sdk::__private::ShmSafe for PingTask {}

        #[allow(clippy::undocumented_unsafe_blocks)]
        unsafe impl ::chi_sdk::__private::Task for PingTask {
            const METHOD: ::chi_sdk::__private::MethodId = 10;

            #[inline]
            fn header(&self) -> &::chi_sdk::__private::TaskHeader {
                &self.header
            }

            #[inline]
            fn header_mut(&mut self) -> &mut ::chi_sdk::__private::TaskHeader {
                &mut self.header
            }

            fn free_fields(&mut self, alloc: &::chi_sdk::__private::Allocator) {
                let _ = alloc;
                <u64 as ::chi_sdk::__private::Ser>::free_shm(&mut self.seq, alloc);
                <u64 as ::chi_sdk::__private::Ser>::free_shm(&mut self.reply, alloc);
            }
        }

        #[allow(dead_code)]
        impl PingTask {
            #[doc = "An empty `PingTask` for `pool` (local domain query, every field zero / empty): what `load_in` fills."]
            pub fn empty(pool: ::chi_sdk::__private::PoolId) -> Self {
                Self {
                    header: ::chi_sdk::__private::TaskHeader::new(
                        pool,
                        <Self as ::chi_sdk::__private::Task>::METHOD,
                        ::core::mem::size_of::<Self>(),
                        ::chi_sdk::__private::DomainQuery::local(),
                    ),
                    seq: <u64 as ::chi_sdk::__private::Ser>::empty(),
                    reply: <u64 as ::chi_sdk::__private::Ser>::empty(),
                }
            }

            #[doc = "A `PingTask` for `pool`, sent to the containers `query` selects, with its input fields; output fields start zero / empty."]
            #[allow(clippy::too_many_arguments)]
            pub fn new(pool: ::chi_sdk::__private::PoolId, query: ::chi_sdk::__private::DomainQuery, seq: u64) -> Self {
                Self {
                    header: ::chi_sdk::__private::TaskHeader::new(
                        pool,
                        <Self as ::chi_sdk::__private::Task>::METHOD,
                        ::core::mem::size_of::<Self>(),
                        query,
                    ),
                    seq,
                    reply: <u64 as ::chi_sdk::__private::Ser>::empty(),
                }
            }
        }

        impl ::chi_sdk::__private::TaskSer for PingTask {
            fn save_in(&self, out: &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), ::chi_sdk::__private::SerError> {
                ::chi_sdk::__private::save_header_in(&self.header, out)?;
                <u64 as ::chi_sdk::__private::Ser>::save(&self.seq, out)?;
                ::core::result::Result::Ok(())
            }

            fn load_in(
                &mut self,
                r: &mut ::chi_sdk::__private::Reader<'_>,
                alloc: &::chi_sdk::__private::Allocator,
            ) -> ::core::result::Result<(), ::chi_sdk::__private::SerError> {
                ::chi_sdk::__private::load_header_in(&mut self.header, r, alloc)?;
                <u64 as ::chi_sdk::__private::Ser>::load(&mut self.seq, r, alloc)?;
                ::core::result::Result::Ok(())
            }

            fn save_out(&self, out: &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), ::chi_sdk::__private::SerError> {
                ::chi_sdk::__private::save_header_out(&self.header, out)?;
                <u64 as ::chi_sdk::__private::Ser>::save(&self.reply, out)?;
                ::core::result::Result::Ok(())
            }

            fn load_out(
                &mut self,
                r: &mut ::chi_sdk::__private::Reader<'_>,
                alloc: &::chi_sdk::__private::Allocator,
            ) -> ::core::result::Result<(), ::chi_sdk::__private::SerError> {
                ::chi_sdk::__private::load_header_out(&mut self.header, r, alloc)?;
                <u64 as ::chi_sdk::__private::Ser>::load(&mut self.reply, r, alloc)?;
                ::core::result::Result::Ok(())
            }

            fn collect_outputs(
                &mut self,
                replica: &Self,
                alloc: &::chi_sdk::__private::Allocator,
            ) -> ::core::result::Result<(), ::chi_sdk::__private::SerError> {
                let _ = (replica, alloc);
                <u64 as ::chi_sdk::__private::Ser>::collect(&mut self.reply, &replica.reply, alloc)?;
                ::core::result::Result::Ok(())
            }

            fn new_copy(&self, alloc: &::chi_sdk::__private::Allocator) -> ::core::result::Result<Self, ::chi_sdk::__private::SerError> {
                let mut copy = Self {
                    header: ::chi_sdk::__private::copy_header(&self.header),
                    seq: <u64 as ::chi_sdk::__private::Ser>::empty(),
                    reply: <u64 as ::chi_sdk::__private::Ser>::empty(),
                };
                let res: ::core::result::Result<(), ::chi_sdk::__private::SerError> = ::core::result::Result::Ok(())
                    .and_then(|()| {
                        copy.seq = <u64 as ::chi_sdk::__private::Ser>::deep_copy(&self.seq, alloc)?;
                        ::core::result::Result::Ok(())
                    })
                    .and_then(|()| {
                        copy.reply = <u64 as ::chi_sdk::__private::Ser>::deep_copy(&self.reply, alloc)?;
                        ::core::result::Result::Ok(())
                    });
                match res {
                    ::core::result::Result::Ok(()) => ::core::result::Result::Ok(copy),
                    ::core::result::Result::Err(e) => {
                        <Self as ::chi_sdk::__private::Task>::free_fields(&mut copy, alloc);
                        ::core::result::Result::Err(e)
                    }
                }
            }
        }

        #[doc(hidden)]
        impl ::chi_sdk::__private::TaskField<0usize> for PingTask {
            type Ty = u64;
        }
        #[doc(hidden)]
        impl ::chi_sdk::__private::TaskField<1usize> for PingTask {
            type Ty = u64;
        }

        impl ::chi_sdk::__private::TaskOutputs for PingTask {
            type Outputs = <u64 as ::chi_sdk::client::CallOutput>::Output;

            fn outputs(
                &self,
                client: &::chi_sdk::__private::Client,
            ) -> ::core::result::Result<Self::Outputs, ::chi_sdk::__private::CallError> {
                let _ = client;
                ::chi_sdk::__private::call_output(client, &self.reply)
            }
        }

        #[doc(hidden)]
        #[allow(unused_macros)]
        macro_rules! __chi_calls_PingTask {
            ($task:ty, $client:ident, $call:ident, $submit:ident) => {
                impl $client {
                    #[doc = #call_doc]
                    #[allow(clippy::too_many_arguments)]
                    pub fn $call(
                        &self,
                        client: &::chi_sdk::__private::Client,
                        seq: u64,
                    ) -> ::core::result::Result<u64, ::chi_sdk::__private::CallError> {
                        self.$submit(client, seq)?.output()
                    }

                    #[doc = #submit_doc]
                    #[allow(clippy::too_many_arguments)]
                    pub fn $submit<'c>(
                        &self,
                        client: &'c ::chi_sdk::__private::Client,
                        seq: u64,
                    ) -> ::core::result::Result<::chi_sdk::__private::Pending<'c, $task>, ::chi_sdk::__private::CallError> {
                        let seq = match ::chi_sdk::__private::call_arg::< <$task as ::chi_sdk::__private::TaskField<0usize>>::Ty>(client, seq) {
                            ::core::result::Result::Ok(v) => v,
                            ::core::result::Result::Err(e) => {
                                return ::core::result::Result::Err(e);
                            }
                        };
                        client.submit(<$task>::new(self.pool, self.query, seq), self.priority,)
                    }
                }
            };
        }
        #[doc(hidden)]
        #[allow(unused_imports)]
        pub(crate) use __chi_calls_PingTask;
    }
}

#[test]
fn expands_a_small_task() {
    let m = TempMod::new(YAML);
    let out = expand(
        &m,
        quote!(method = 10),
        quote! {
            /// Ping.
            pub struct PingTask {
                pub seq: u64,
                /// Reply.
                #[output]
                pub reply: u64,
            }
        },
    )
    .unwrap();
    assert_eq!(out.to_string(), expected_ping(&m.yaml()).to_string());
}

#[test]
fn unit_struct_and_directions() {
    let m = TempMod::new(YAML);
    let out = expand(
        &m,
        quote!(method = 11),
        quote!(
            struct Pong;
        ),
    )
    .unwrap()
    .to_string();
    assert!(out.contains("struct Pong { # [doc"), "{out}");
    assert!(out.contains("pub fn new (pool : :: chi_sdk :: __private :: PoolId , query : :: chi_sdk :: __private :: DomainQuery) -> Self"), "{out}");

    // inout fields are constructor parameters and travel both ways; a field named
    // `pool` renames the parameter.
    let out = expand(
        &m,
        quote!(method = 10, name = "kPing"),
        quote!(
            struct Other {
                #[inout]
                pool: u32,
                #[output]
                o: u8,
            }
        ),
    )
    .unwrap()
    .to_string();
    assert!(out.contains("pub fn new (_pool : :: chi_sdk :: __private :: PoolId , query : :: chi_sdk :: __private :: DomainQuery , pool : u32)"), "{out}");
    assert!(out.contains("< u32 as :: chi_sdk :: __private :: Ser > :: save (& self . pool , out) ? ; :: core :: result :: Result :: Ok (()) } fn load_in"), "{out}");
    assert!(out.contains("save_header_out (& self . header , out) ? ; < u32 as :: chi_sdk :: __private :: Ser > :: save (& self . pool , out) ? ; < u8 as :: chi_sdk :: __private :: Ser > :: save (& self . o , out)"), "{out}");
}

#[test]
fn new_renames_the_emplace_constructor() {
    let m = TempMod::new(YAML);
    let item = quote! {
        pub struct PingTask {
            pub seq: u64,
            #[output]
            pub reply: u64,
        }
    };
    let plain = expand(&m, quote!(method = 10), item.clone())
        .unwrap()
        .to_string();
    let renamed = expand(&m, quote!(method = 10, new = "emplace"), item.clone())
        .unwrap()
        .to_string();
    // Only the constructor's name differs; `empty` keeps its name.
    assert_eq!(
        renamed,
        plain
            .replacen("pub fn new (", "pub fn emplace (", 1)
            .replacen("> :: new (self . pool", "> :: emplace (self . pool", 1)
    );
    assert!(
        renamed.contains("pub fn empty (pool : :: chi_sdk :: __private :: PoolId) -> Self"),
        "{renamed}"
    );
    assert!(!renamed.contains("pub fn new ("), "{renamed}");

    // Argument errors come with the other problems of the item.
    let e = error(
        &m,
        quote!(method = 10, new = "empty"),
        quote!(
            struct PingTask {
                s: String,
            }
        ),
    );
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("`empty` is the other constructor"),
        "{e:#?}"
    );
    assert!(
        e[1].starts_with("`String` cannot be a task field"),
        "{e:#?}"
    );
}

#[test]
fn field_errors_are_all_reported() {
    let m = TempMod::new(YAML);
    let e = error(
        &m,
        quote!(method = 10),
        quote!(
            struct PingTask {
                name: String,
                items: Vec<u64>,
                #[input]
                #[output]
                flag: bool,
                r: &'static u8,
                header: u64,
                #[inout(x)]
                ok: u32,
            }
        ),
    );
    assert_eq!(e.len(), 7, "{e:#?}");
    assert!(e[0].contains("`String` cannot be a task field") && e[0].contains("ShmString"));
    assert!(e[1].contains("use `chi_sdk::shm::ShmVec<u64>`"));
    assert!(e[2].contains("a field has one direction"));
    assert!(e[3].contains("`bool` cannot be a task field") && e[3].contains("use `u8`"));
    assert!(e[4].contains("a reference is an address"));
    assert!(e[5].contains("inserts `pub header"));
    assert!(e[6].contains("`#[inout]` takes no arguments"));
}

#[test]
fn item_shape_errors() {
    let m = TempMod::new(YAML);
    let e = error(
        &m,
        quote!(method = 10),
        quote!(
            enum PingTask {
                A,
            }
        ),
    );
    assert!(e[0].contains("not to an enum"), "{e:?}");
    let e = error(
        &m,
        quote!(method = 10),
        quote!(
            struct PingTask(u32);
        ),
    );
    assert!(e[0].contains("not a tuple struct"), "{e:?}");
    let e = error(
        &m,
        quote!(method = 10),
        quote!(
            #[repr(C)]
            struct PingTask<T> {
                t: T,
                b: bool,
            }
        ),
    );
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].contains("cannot be generic") && e[1].contains("remove this attribute"));
    assert!(e[2].contains("`bool` cannot be a task field"));
    // Argument and item errors together.
    let e = error(&m, quote!(), quote!(union PingTask { a: u32 }));
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn yaml_errors_name_the_file_key_and_ids() {
    let m = TempMod::new(YAML);
    let file = m.yaml().display().to_string();
    let item = quote!(
        struct PingTask {
            a: u32,
        }
    );

    let e = error(&m, quote!(method = 12), item.clone());
    assert_eq!(
        e,
        [format!(
            "method = 12 does not match `kPing: 10` at {file}:5: method ids come from the YAML \
             and never change; write `method = 10`"
        )]
    );

    let e = error(
        &m,
        quote!(method = 10),
        quote!(
            struct Missing;
        ),
    );
    assert!(
        e[0].starts_with(&format!(
            "`kMissing` is not in {file} (the key of `Missing`"
        )),
        "{e:?}"
    );
    assert!(e[0].contains("add `kMissing: 10`"), "{e:?}");

    let e = error(&m, quote!(method = 4, name = "kRecover"), item.clone());
    assert!(
        e[0].starts_with(&format!("`kRecover` is -1 (unsupported) at {file}:4")),
        "{e:?}"
    );

    let e = error(&m, quote!(method = 10, yaml = "../nope.yaml"), item.clone());
    assert!(
        e[0].contains("nope.yaml not found") && e[0].contains("relative to this source file"),
        "{e:?}"
    );

    let empty = TempMod::new("");
    std::fs::remove_file(empty.yaml()).unwrap();
    let e = error(&empty, quote!(method = 10), item.clone());
    assert!(
        e[0].contains("chimaera_mod.yaml not found") && e[0].contains("beside its Cargo.toml"),
        "{e:?}"
    );

    let bad = TempMod::new("kPing: 10\nkPong: [11\n");
    let e = error(&bad, quote!(method = 10), item.clone());
    assert!(
        e[0].starts_with(&format!("cannot parse {}:", bad.yaml().display())),
        "{e:?}"
    );

    // `yaml = ` is relative to the source file (here `<dir>/src/lib.rs`).
    let ok = expand(&m, quote!(method = 10, yaml = "../chimaera_mod.yaml"), item);
    assert!(ok.is_ok());
}

#[test]
fn strip_keeps_the_item_without_direction_attributes() {
    let out = super::strip_field_attrs(quote!(
        struct A {
            #[output]
            #[doc = "x"]
            a: String,
        }
    ));
    assert_eq!(
        out.to_string(),
        quote!(
            struct A {
                #[doc = "x"]
                a: String,
            }
        )
        .to_string()
    );
    let not_a_struct = quote!(
        fn f() {}
    );
    assert_eq!(
        super::strip_field_attrs(not_a_struct.clone()).to_string(),
        not_a_struct.to_string()
    );
}
