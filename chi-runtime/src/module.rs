//! The module manager: finds module libraries by name, checks their ABI
//! fingerprint and hands out their function tables.
//!
//! # Design
//!
//! A module is found first among the built-in modules (the admin module, linked
//! into the runtime but registered through the same [`ModuleApi`] table as any
//! other), then as `lib{name}_runtime.so` in the configured module path followed by
//! the directories of `CHI_MODULE_PATH` (colon-separated). A library is loaded
//! on first use, its fingerprint checked before anything else of its table is
//! touched, and its `init` called once with the manager's services table
//! ([`crate::services`]).
//!
//! Each runtime owns its manager (in its node state, [`crate::state`]); nothing
//! of it is process-wide. A built-in module gets what it needs from the
//! runtime through its [`Builtin::create`] constructor, not through a global.
//!
//! Libraries are never unloaded, not even when the manager is dropped:
//! abandoned coroutine stacks, the library's thread-locals and its log
//! forwarder may still point into its code. A library keeps the services of
//! the runtime that initialised it in process-wide state, which is why a
//! process hosts one runtime in its life ([`crate::state`]).

use std::collections::HashMap;
use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chi_sdk::abi::{
    AbiFingerprint, ContainerInfo, EntryFn, ErrorBuf, ModuleApi, RuntimeServices, SegmentInfo,
    entry_symbol,
};

/// Why a module could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// No library of that name was found.
    #[error(
        "module '{name}' not found: no built-in module of that name and no lib{name}_runtime.so in {}; \
         build the module and add its directory to module_path or CHI_MODULE_PATH",
        if searched.is_empty() { "any directory (the module path is empty)".to_owned() } else { searched.join(", ") }
    )]
    NotFound {
        /// Library name.
        name: String,
        /// Directories searched.
        searched: Vec<String>,
    },
    /// dlopen or the entry symbol failed.
    #[error("cannot load module '{name}' from {path}: {message}")]
    Load {
        /// Library name.
        name: String,
        /// File.
        path: String,
        /// What failed.
        message: String,
    },
    /// The module was built against another ABI or compiler.
    #[error(
        "module '{name}' ({path}) was built for {module}, but this runtime is {runtime}; \
         rebuild the module against this runtime's chi-sdk with the same rustc"
    )]
    AbiMismatch {
        /// Library name.
        name: String,
        /// File.
        path: String,
        /// Module fingerprint.
        module: String,
        /// Runtime fingerprint.
        runtime: String,
    },
    /// The module's init refused.
    #[error("module '{name}' refused to initialise (code {code})")]
    Init {
        /// Library name.
        name: String,
        /// Its code.
        code: i32,
    },
}

/// A module whose table the runtime may call.
pub struct LoadedModule {
    /// `chimod_lib_name`.
    pub name: String,
    /// Where it came from (`built-in` or a path).
    pub origin: String,
    /// Its function table (lives as long as the library, i.e. the process).
    pub api: &'static ModuleApi,
    /// A built-in module's constructor of containers (used instead of `api.create`).
    create: Option<BuiltinCreate>,
    /// Never dropped: the library stays loaded (see the module doc).
    _lib: ManuallyDrop<Option<libloading::Library>>,
}

impl LoadedModule {
    /// Creates a container for the pool `info` describes, with arguments
    /// `args`: the module's state, or null with `err` filled.
    pub fn create_container(
        &self,
        info: &ContainerInfo,
        args: &str,
        err: &mut ErrorBuf,
    ) -> *mut c_void {
        if let Some(create) = &self.create {
            return create(info, args, err);
        }
        // SAFETY: `info`, `args` and `err` are valid for the call; the module's
        // create contract is to return its state or null with `err` filled.
        unsafe { (self.api.create)(info, args.as_ptr(), args.len(), err) }
    }
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("name", &self.name)
            .field("origin", &self.origin)
            .finish()
    }
}

/// A built-in module's constructor of containers, called instead of its
/// table's `create` (same contract: the container's state, which the table's
/// other functions take, or null with the error buffer filled). It carries
/// what the module's containers need from the runtime that registered it.
pub type BuiltinCreate =
    Arc<dyn Fn(&ContainerInfo, &str, &mut ErrorBuf) -> *mut c_void + Send + Sync>;

/// A module linked into the runtime.
pub struct Builtin {
    /// Library name.
    pub name: &'static str,
    /// Its entry.
    pub entry: EntryFn,
    /// Its constructor of containers; `None`: the table's `create`.
    pub create: Option<BuiltinCreate>,
}

impl std::fmt::Debug for Builtin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builtin")
            .field("name", &self.name)
            .field("create", &self.create.is_some())
            .finish()
    }
}

/// Finds, checks and keeps module libraries.
pub struct ModuleManager {
    search: Vec<PathBuf>,
    builtins: Vec<Builtin>,
    loaded: Mutex<HashMap<String, Arc<LoadedModule>>>,
    services: &'static RuntimeServices,
}

impl std::fmt::Debug for ModuleManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleManager")
            .field("search", &self.search)
            .finish()
    }
}

impl ModuleManager {
    /// A manager searching `module_path` then `CHI_MODULE_PATH`, knowing the
    /// built-in modules, offering modules the runtime's `segments`.
    pub fn new(
        module_path: &[PathBuf],
        builtins: Vec<Builtin>,
        node_id: u32,
        segments: Vec<SegmentInfo>,
    ) -> ModuleManager {
        let mut search: Vec<PathBuf> = module_path.to_vec();
        if let Ok(env) = std::env::var("CHI_MODULE_PATH") {
            search.extend(env.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
        }
        let services = crate::services::table(node_id, segments);
        chi_sdk::container::mark_runtime_process();
        ModuleManager {
            search,
            builtins,
            loaded: Mutex::new(HashMap::new()),
            services,
        }
    }

    /// The module named `name`, loading it if needed.
    pub fn get(&self, name: &str) -> Result<Arc<LoadedModule>, ModuleError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = loaded.get(name) {
            return Ok(m.clone());
        }
        let m = Arc::new(self.load(name)?);
        // SAFETY: the table is valid for the life of the library, which is kept in
        // `m`; init is called once, before any other function of the table.
        let code = unsafe { (m.api.init)(self.services) };
        if code != 0 {
            return Err(ModuleError::Init {
                name: name.to_owned(),
                code,
            });
        }
        tracing::info!(module = name, origin = %m.origin, "module loaded");
        loaded.insert(name.to_owned(), m.clone());
        Ok(m)
    }

    fn check(&self, name: &str, path: &str, api: &'static ModuleApi) -> Result<(), ModuleError> {
        let ours = AbiFingerprint::current();
        if api.fingerprint != ours {
            return Err(ModuleError::AbiMismatch {
                name: name.to_owned(),
                path: path.to_owned(),
                module: api.fingerprint.to_string(),
                runtime: ours.to_string(),
            });
        }
        Ok(())
    }

    fn load(&self, name: &str) -> Result<LoadedModule, ModuleError> {
        if let Some(b) = self.builtins.iter().find(|b| b.name == name) {
            // SAFETY: built-in entries return a pointer to a static table.
            let api = unsafe { &*(b.entry)() };
            self.check(name, "built-in", api)?;
            return Ok(LoadedModule {
                name: name.to_owned(),
                origin: "built-in".into(),
                api,
                create: b.create.clone(),
                _lib: ManuallyDrop::new(None),
            });
        }
        let file = format!("lib{name}_runtime.so");
        let Some(path) = self
            .search
            .iter()
            .map(|d| d.join(&file))
            .find(|p| p.is_file())
        else {
            return Err(ModuleError::NotFound {
                name: name.to_owned(),
                searched: self
                    .search
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            });
        };
        let shown = path.display().to_string();
        let err = |message: String| ModuleError::Load {
            name: name.to_owned(),
            path: shown.clone(),
            message,
        };
        // SAFETY: loading a library runs its initialisers; module libraries are
        // built with chi-sdk and have none beyond Rust's own.
        let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| err(e.to_string()))?;
        // SAFETY: the symbol is declared by chi-sdk as an `EntryFn`; we check the
        // fingerprint of the table it returns before using anything else.
        let api = unsafe {
            let entry: libloading::Symbol<'_, EntryFn> = lib
                .get(entry_symbol(name).as_bytes())
                .map_err(|e| err(e.to_string()))?;
            let p = entry();
            if p.is_null() {
                return Err(err("the entry returned no table".into()));
            }
            &*p
        };
        self.check(name, &shown, api)?;
        Ok(LoadedModule {
            name: name.to_owned(),
            origin: shown,
            api,
            create: None,
            _lib: ManuallyDrop::new(Some(lib)),
        })
    }

    /// The services table handed to modules.
    pub fn services(&self) -> &'static RuntimeServices {
        self.services
    }
}
