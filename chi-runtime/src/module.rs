//! The module manager: finds module libraries by name, checks their ABI
//! fingerprint and hands out their function tables.
//!
//! A module is found first among the built-in modules (the admin module, linked
//! into the runtime but registered through the same [`ModuleApi`] table as any
//! other), then as `lib{name}_runtime.so` in the configured module path followed by
//! the directories of `CHI_MODULE_PATH` (colon-separated). Libraries stay loaded
//! until the runtime exits: containers and tasks may still point into them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use std::ffi::c_void;

use chi_sdk::abi::{
    AbiFingerprint, EntryFn, ErrorBuf, LocalQueueInfo, ModuleApi, RunCtx, RuntimeServices,
    SegmentInfo, entry_symbol, level,
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
    _lib: Option<libloading::Library>,
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("name", &self.name)
            .field("origin", &self.origin)
            .finish()
    }
}

/// A module linked into the runtime.
#[derive(Debug)]
pub struct Builtin {
    /// Library name.
    pub name: &'static str,
    /// Its entry.
    pub entry: EntryFn,
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

unsafe extern "C" fn svc_log(
    lvl: u32,
    target: *const u8,
    target_len: usize,
    msg: *const u8,
    len: usize,
) {
    // SAFETY: the module passes pointers to `len` / `target_len` readable bytes
    // (the contract of `RuntimeServices::log`).
    let (target, msg) = unsafe {
        (
            std::slice::from_raw_parts(target, target_len),
            std::slice::from_raw_parts(msg, len),
        )
    };
    let target = String::from_utf8_lossy(target);
    let msg = String::from_utf8_lossy(msg);
    match lvl {
        level::ERROR => tracing::error!(module = %target, "{msg}"),
        level::WARN => tracing::warn!(module = %target, "{msg}"),
        level::INFO => tracing::info!(module = %target, "{msg}"),
        level::DEBUG => tracing::debug!(module = %target, "{msg}"),
        _ => tracing::trace!(module = %target, "{msg}"),
    }
}

unsafe extern "C" fn svc_yield(ctx: *mut RunCtx) {
    // SAFETY: `ctx` is the RunCtx the worker passed to the running task; its
    // `runtime` field points to the coroutine's yielder (see `worker`).
    unsafe { crate::worker::yield_current(ctx) }
}

/// What `create_local_queue` fills while a container is being created
/// ([`chi_sdk::abi::ContainerInfo::runtime`] points to it).
#[derive(Debug, Default)]
pub(crate) struct QueueBuilder {
    pub(crate) queues: Vec<LocalQueueInfo>,
}

unsafe extern "C" fn svc_create_local_queue(
    runtime: *mut c_void,
    queue_id: u32,
    lanes: u32,
    priority: u32,
    err: *mut ErrorBuf,
) -> i32 {
    // SAFETY: `err` is the caller's buffer.
    let err = unsafe { &mut *err };
    if runtime.is_null() {
        err.set("no container is being created");
        return chi_sdk::task::code::FAILED;
    }
    // SAFETY: `runtime` is the `QueueBuilder` the pool manager passed in the
    // ContainerInfo of the `create` call still running (checked non-null).
    let b = unsafe { &mut *(runtime as *mut QueueBuilder) };
    if lanes == 0 || lanes > u32::from(u16::MAX) || queue_id > u32::from(u16::MAX) {
        err.set(&format!("a local queue has 1..=65535 lanes and an id up to 65535 (got {lanes} lanes, id {queue_id})"));
        return chi_sdk::task::code::FAILED;
    }
    if priority > chi_sdk::abi::lane_priority::HIGH_LATENCY {
        err.set(&format!("unknown lane priority {priority}"));
        return chi_sdk::task::code::FAILED;
    }
    if b.queues.iter().any(|q| q.queue_id == queue_id) {
        err.set("a queue with this id exists; give each queue its own id");
        return chi_sdk::task::code::FAILED;
    }
    b.queues.push(LocalQueueInfo {
        queue_id,
        lanes,
        priority,
    });
    0
}

fn max_log_level() -> u32 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::OFF => 0,
        LevelFilter::ERROR => level::ERROR,
        LevelFilter::WARN => level::WARN,
        LevelFilter::INFO => level::INFO,
        LevelFilter::DEBUG => level::DEBUG,
        _ => level::TRACE,
    }
}

impl ModuleManager {
    /// A manager searching `module_path` then `CHI_MODULE_PATH`, knowing the
    /// built-in modules, offering modules the runtime's `segments`.
    pub fn new(
        module_path: &[PathBuf],
        builtins: Vec<Builtin>,
        segments: Vec<SegmentInfo>,
    ) -> ModuleManager {
        let mut search: Vec<PathBuf> = module_path.to_vec();
        if let Ok(env) = std::env::var("CHI_MODULE_PATH") {
            search.extend(env.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
        }
        let segs: &'static [SegmentInfo] = Box::leak(segments.into_boxed_slice());
        let services = Box::leak(Box::new(RuntimeServices {
            fingerprint: AbiFingerprint::current(),
            log: svc_log,
            yield_now: svc_yield,
            segments: segs.as_ptr(),
            num_segments: segs.len(),
            max_log_level: max_log_level(),
            create_local_queue: svc_create_local_queue,
        }));
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
                _lib: None,
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
            _lib: Some(lib),
        })
    }

    /// The services table handed to modules.
    pub fn services(&self) -> &'static RuntimeServices {
        self.services
    }
}

/// The process-wide module manager (set once at start).
pub(crate) static MODULES: OnceLock<ModuleManager> = OnceLock::new();
