//! The table's `aggregate`: how the outputs of a broadcast's replicas
//! combine into the task the caller waits on.
//!
//! The runtime calls it once per replica past the first, in container
//! order, with the task holding container 0's outputs. Each supported
//! method gets an arm: the container's `aggregate_foo(&self, task: &mut
//! FooTask, replica: &FooTask) -> Result<(), E>` if it has one, else the
//! generated default, the task type's `TaskSer::collect_outputs`
//! (collections append, values and `#[inout]` fields keep container 0's).

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{ImplItemFn, LitStr, Type};

use super::generate::private;

/// The arm of method `id` (task type `tt`) of library `lib`, calling
/// `custom` if the container has one (which needs the container: on a node
/// without one it fails, saying so).
pub(super) fn arm(id: u32, tt: &Type, custom: Option<&ImplItemFn>, lib: &str) -> TokenStream {
    let p = private();
    match custom {
        Some(f) => {
            let name = &f.sig.ident;
            let shown = LitStr::new(&name.to_string(), Span::call_site());
            quote! {
                #id => {
                    // No container on this node (a null state): the handler,
                    // a method of the container, cannot run.
                    let this = this.ok_or_else(|| #p::aggregate_needs_container(#lib, #shown))?;
                    // SAFETY: the runtime passes two live tasks of this method
                    // (`cast` checks their size and alignment); the replica is
                    // only read.
                    let (t, r) = unsafe {
                        (
                            #p::cast::<#tt>(task)?,
                            &*#p::cast::<#tt>(replica as *mut #p::TaskHeader)?,
                        )
                    };
                    this.#name(t, r).map_err(#p::failed)
                }
            }
        }
        // SAFETY (generated): as above.
        None => quote!(#id => unsafe { #p::collect::<#tt>(task, replica) },),
    }
}

/// The table's `aggregate` entry: a function dispatching to `arms` (the
/// `unknown` arm for other methods).
pub(super) fn entry(ty: &Type, arms: &[TokenStream], unknown: &TokenStream) -> TokenStream {
    let p = private();
    quote! {{
        unsafe extern "C" fn __aggregate(
            container: *mut ::core::ffi::c_void,
            task: *mut #p::TaskHeader,
            replica: *const #p::TaskHeader,
            err: *mut #p::ErrorBuf,
        ) -> i32 {
            // SAFETY: the runtime passes its container, two live tasks of one
            // method and an error buffer (AggregateFn's contract).
            unsafe {
                #p::aggregate::<#ty>(container, task, replica, err, |this, task, replica| {
                    let _ = this;
                    // SAFETY: a live task.
                    match unsafe { (*task).method } {
                        #(#arms)*
                        #unknown
                    }
                })
            }
        }
        ::core::option::Option::Some(__aggregate as #p::AggregateFn)
    }}
}
