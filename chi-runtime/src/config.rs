//! The runtime's configuration.
//!
//! The built-in defaults live in `chi-runtime/config/chimaera_default.yaml`, embedded
//! in the binary ([`Config::default_yaml`]). The environment variable
//! [`CHI_SERVER_CONF`](ENV_SERVER_CONF) names the user's YAML file, whose keys override
//! the defaults key by key, nested keys too; lists are replaced whole.
//!
//! Both documents are read into "raw" structs whose every field is optional and
//! remembers its line and column; the user's raw struct is merged over the defaults',
//! then every value is checked and the typed [`Config`] built. A mistake in the user's
//! file becomes a [`ConfigError`] that names the file, the line and column, the key
//! (as a dotted path such as `workers.low_latency`) and what was expected.
//!
//! Checking a value includes what the runtime will make of it
//! ([`footprint`]): the main segment must hold its allocator metadata, the
//! process queue and room for tasks; worker threads and clients share the main
//! segment's allocator owner slots. What depends on the machine is checked at
//! start, before anything is created, by [`Config::check_resources`]
//! (`resources.rs`): the segments against the free space of `/dev/shm`, the
//! workers against the CPUs, the coroutine stacks against the memory-map and
//! address-space limits. Its errors name the file, line and key too, and the
//! CLI exits with code 2 on them as on any configuration error.

pub mod footprint;
mod hostfile;
mod resources;
mod units;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chi_sdk::shm::Segment;
use chi_sdk::shm::alloc::MAX_OWNERS;
use serde::{Deserialize, Deserializer};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

pub use hostfile::{MAX_HOST_NAME, MAX_HOSTS, load_hostfile, parse_hostfile};
pub use units::{UnitError, format_size, format_size_approx, parse_duration, parse_size};

use footprint::{MainSegmentNeeds, max_clients_for};
use units::{ByteSize, DurationValue, OptionalDuration};

/// The environment variable naming the server configuration file.
pub const ENV_SERVER_CONF: &str = "CHI_SERVER_CONF";

/// How errors in the built-in defaults name their "file".
pub const DEFAULT_SOURCE_NAME: &str = "<built-in defaults>";

/// The built-in default configuration, commented.
const DEFAULT_YAML: &str = include_str!("../config/chimaera_default.yaml");

/// Largest accepted shared-memory segment. (The smallest: [`Segment::min_size`]
/// for `client_data` and `runtime_data`, [`MainSegmentNeeds::min_size`] for `main`.)
pub const MAX_SEGMENT_SIZE: u64 = 1 << 40;
/// Most worker threads of one kind.
pub const MAX_WORKERS: u32 = MAX_WORKER_THREADS;
/// Most worker threads of all kinds together. Each holds an allocator owner slot
/// of the main segment (there are [`MAX_OWNERS`]), and far more threads than
/// cores only adds switching.
pub const MAX_WORKER_THREADS: u32 = 256;
/// Worker threads per available CPU at most, checked at start
/// ([`Config::check_resources`]).
pub const WORKER_THREADS_PER_CPU: u32 = 64;
/// Most lanes per priority of the process queue.
pub const MAX_LANES: u32 = 1024;
/// Smallest lane depth.
pub const MIN_QUEUE_DEPTH: u32 = 2;
/// Largest lane depth.
pub const MAX_QUEUE_DEPTH: u32 = 1 << 24;
/// Smallest coroutine stack.
pub const MIN_STACK_SIZE: usize = 16 << 10;
/// Largest coroutine stack.
pub const MAX_STACK_SIZE: usize = 64 << 20;
/// Coroutine stacks are rounded up to a multiple of this.
pub const STACK_SIZE_GRANULE: usize = 4 << 10;
/// Most live coroutines per worker.
pub const MAX_LIVE_COROUTINES: u32 = 1 << 16;
/// Longest accepted busy-poll period.
pub const MAX_BUSY_POLL: Duration = Duration::from_secs(1);
/// Accepted `reaper.interval`s.
pub const REAPER_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(60));
/// Accepted `supervisor.stall_timeout`s.
pub const STALL_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(24 * 3600));
/// Pool ids a `compose` entry may not take: the null pool (0) and the admin pool (1).
pub const RESERVED_POOL_IDS: [u64; 2] = [0, 1];

// ---------------------------------------------------------------------------------
// The typed configuration.

/// The runtime's configuration: the defaults with the user's file applied, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// TCP port of the runtime's server (never 0).
    pub port: u16,
    /// The hostfile, if any (relative paths resolved against the config file's directory).
    pub hostfile: Option<PathBuf>,
    /// The hosts of the cluster, in hostfile order (node id = index + 1);
    /// `["127.0.0.1"]` without a hostfile.
    pub hosts: Vec<String>,
    /// Sizes of the shared-memory segments.
    pub segments: SegmentSizes,
    /// Worker threads of each kind.
    pub workers: WorkerCounts,
    /// The process queue's shape.
    pub queue: QueueConfig,
    /// Coroutine settings.
    pub coroutine: CoroutineConfig,
    /// Directories searched for ChiMod runtime libraries, in order.
    pub module_path: Vec<PathBuf>,
    /// Log settings.
    pub logging: LoggingConfig,
    /// How workers go idle.
    pub idle: IdleConfig,
    /// How long a client waits for a stopped or dead runtime before erroring.
    pub client_wait_timeout: Duration,
    /// The process reaper.
    pub reaper: ReaperConfig,
    /// The worker supervisor.
    pub supervisor: SupervisorConfig,
    /// The deadline a client's `wait` applies by default when the runtime is alive
    /// but the task makes no progress; `None`: wait without a deadline.
    pub task_deadline: Option<Duration>,
    /// The control socket.
    pub control: ControlConfig,
    /// Pools to create at start, in order.
    pub compose: Vec<PoolSpec>,
    /// The user's file the configuration came from (`None`: the defaults alone).
    pub source: Option<String>,
    /// Where the keys checked at start were set, for their errors.
    origins: KeyOrigins,
}

/// Sizes in bytes of the three shared-memory segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSizes {
    /// Tasks shared by clients and the runtime.
    pub main: u64,
    /// Data that clients allocate and share with the runtime.
    pub client_data: u64,
    /// Data that the runtime allocates and shares with clients.
    pub runtime_data: u64,
}

/// Number of worker threads of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerCounts {
    /// Run the low-latency lanes, the process queue among them (at least 1).
    pub low_latency: u32,
    /// Run the high-latency lanes (at least 1).
    pub high_latency: u32,
    /// Train the ChiMods' performance models.
    pub reinforcement: u32,
    /// Reclaim what dead clients held: 0 (no reaper) or 1.
    pub process_reaper: u32,
}

impl WorkerCounts {
    /// Worker threads of all kinds.
    pub fn total(&self) -> u32 {
        self.low_latency + self.high_latency + self.reinforcement + self.process_reaper
    }
}

/// The shape of the process queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Lanes per priority (default: one per low-latency worker).
    pub lanes: u32,
    /// Tasks one lane holds; a power of two, at least 2.
    pub depth: u32,
}

/// Coroutine settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoroutineConfig {
    /// Bytes of one coroutine stack; a multiple of [`STACK_SIZE_GRANULE`].
    pub stack_size: usize,
    /// Live coroutines (running or suspended tasks) per worker at most; past it,
    /// tasks wait in their lanes. At least 1.
    pub max_live: u32,
}

/// Process reaper settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaperConfig {
    /// How often the reaper checks that registered clients are alive.
    pub interval: Duration,
}

/// Worker supervisor settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// A worker that has work but makes no progress for this long is reported as
    /// stalled, and its lanes are moved to other workers.
    pub stall_timeout: Duration,
}

/// Control socket settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlConfig {
    /// Registered clients at most. Each holds an allocator owner slot of the main
    /// segment, so this is at most [`footprint::max_clients_for`] the workers.
    pub max_clients: u32,
}

/// Log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// The most verbose level logged.
    pub level: LogLevel,
    /// File the log is appended to (`None`: standard error).
    pub file: Option<PathBuf>,
}

/// How workers go idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleConfig {
    /// How long a worker keeps polling after it last found work, before sleeping.
    pub busy_poll: Duration,
}

/// A log level, as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Informational messages and above.
    Info,
    /// Debug messages and above.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The level's name as written in the config (`"info"`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// The matching `tracing` level.
    pub fn to_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a `compose` pool's containers are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolQuery {
    /// On this node only.
    Local,
    /// On every node of the cluster.
    Global,
}

impl PoolQuery {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolQuery::Local => "local",
            PoolQuery::Global => "global",
        }
    }
}

impl fmt::Display for PoolQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pool to create when the runtime starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    /// ChiMod library name, e.g. `chimaera_bdev`.
    pub module: String,
    /// Pool name, unique among the `compose` entries.
    pub name: String,
    /// Where its containers are created.
    pub query: PoolQuery,
    /// A fixed pool id (never 0 or 1), or `None` to let the runtime choose.
    pub id: Option<u64>,
    /// A free-form string for the module's create method.
    pub args: Option<String>,
}

// ---------------------------------------------------------------------------------
// Errors.

/// A place in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    /// The file's path (or [`DEFAULT_SOURCE_NAME`]).
    pub file: String,
    /// 1-based line; 0 when unknown.
    pub line: u64,
    /// 1-based column; 0 when unknown.
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        Ok(())
    }
}

/// The source line an error points at, with a caret under the column; displays as
/// nothing when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snippet(Option<String>);

impl Snippet {
    fn of(text: &str, line: u64, column: u64) -> Snippet {
        let Some(index) = usize::try_from(line).ok().and_then(|l| l.checked_sub(1)) else {
            return Snippet(None);
        };
        let Some(source_line) = text.lines().nth(index) else {
            return Snippet(None);
        };
        let number = line.to_string();
        let gutter = " ".repeat(number.len());
        let mut out = format!("\n {number} | {source_line}");
        if column > 0 {
            let pad: String = source_line
                .chars()
                .take(usize::try_from(column - 1).unwrap_or(0))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("\n {gutter} | {pad}^"));
        }
        Snippet(Some(out))
    }
}

impl fmt::Display for Snippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(text) => f.write_str(text),
            None => Ok(()),
        }
    }
}

/// Where an error is in a config file and what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    /// File, line and column.
    pub at: Pos,
    /// Dotted path of the key, e.g. `workers.low_latency` or `compose[1].name`;
    /// `(top level)` for the document itself; empty when unknown (syntax errors only).
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What the key takes (for [`ConfigError::UnknownKey`], the keys allowed there);
    /// empty when `message` already says it.
    pub expected: String,
    /// The offending line, with a caret.
    pub snippet: Snippet,
}

/// An error loading the configuration. Every variant about a file's content names
/// the file, the line (and column) and the key; [`ConfigError::file`],
/// [`ConfigError::line`] and [`ConfigError::key`] give them back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file (the config file or the hostfile) could not be read.
    #[error("cannot read {what} `{}`{origin}: {source}", path.display())]
    Read {
        /// `"config file"` or `"hostfile"`.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// Who named the file, e.g. ` (named by CHI_SERVER_CONF)`; may be empty.
        origin: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not well-formed YAML.
    #[error("{}: YAML syntax error{}: {}{}", .0.at, near_key(&.0.key), .0.message, .0.snippet)]
    Syntax(Box<ErrorDetail>),
    /// A key the configuration does not have.
    #[error("{}: unknown key `{}`; expected one of: {}{}", .0.at, .0.key, .0.expected, .0.snippet)]
    UnknownKey(Box<ErrorDetail>),
    /// A value of the wrong type (a string where a number goes, a list where a
    /// mapping goes...).
    #[error("{}: key `{}`: {}; expected {}{}", .0.at, .0.key, .0.message, .0.expected, .0.snippet)]
    WrongType(Box<ErrorDetail>),
    /// A value of the right type that is not allowed (out of range, unknown name,
    /// missing key...). The message says what is expected.
    #[error("{}: key `{}`: {}{}", .0.at, .0.key, .0.message, .0.snippet)]
    BadValue(Box<ErrorDetail>),
    /// A valid configuration that this machine cannot hold (checked at start by
    /// [`Config::check_resources`]): segments larger than the free space of
    /// `/dev/shm`, more threads or coroutine stacks than it can run. `key` is the
    /// key to change; the message names the others involved and what to do.
    #[error("{}: key `{}`: {}{}", .0.at, .0.key, .0.message, .0.snippet)]
    Resources(Box<ErrorDetail>),
    /// A mistake in the hostfile.
    #[error("{}: {message}{origin}", Pos { file: file.clone(), line: *line as u64, column: 0 })]
    Hostfile {
        /// The hostfile's path.
        file: String,
        /// 1-based line; 0 for the whole file.
        line: usize,
        /// What is wrong.
        message: String,
        /// Which config key named the hostfile; may be empty.
        origin: String,
    },
}

/// Where a key's value was set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    at: Pos,
    snippet: Snippet,
    from_user: bool,
}

/// Where the keys checked after parsing were set, by dotted key: errors found
/// later (at start) still name the file, line and key.
///
/// Not part of a configuration's value: two configurations with the same
/// settings are equal wherever their keys were written.
#[derive(Clone, Default)]
struct KeyOrigins(HashMap<String, Origin>);

impl PartialEq for KeyOrigins {
    fn eq(&self, _: &KeyOrigins) -> bool {
        true
    }
}

impl Eq for KeyOrigins {}

impl fmt::Debug for KeyOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<(&String, &Origin)> = self.0.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        f.debug_map()
            .entries(keys.into_iter().map(|(k, o)| (k, o.at.to_string())))
            .finish()
    }
}

impl KeyOrigins {
    /// Where `key` was set; a place in the defaults without a line if unknown.
    fn of(&self, key: &str) -> Origin {
        self.0.get(key).cloned().unwrap_or_else(|| Origin {
            at: Pos {
                file: DEFAULT_SOURCE_NAME.to_owned(),
                line: 0,
                column: 0,
            },
            snippet: Snippet::default(),
            from_user: false,
        })
    }

    /// Whether the user's file set `key`.
    fn set_by_user(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|o| o.from_user)
    }

    /// Of `keys`, the one to name in an error about all of them: the one with the
    /// largest value among those the user set, else the first.
    fn blame<'k>(&self, keys: &[(&'k str, u64)]) -> &'k str {
        keys.iter()
            .filter(|(k, _)| self.set_by_user(k))
            .max_by_key(|(_, v)| *v)
            .or(keys.first())
            .map_or("", |(k, _)| k)
    }

    /// `key` with its value and place, for messages naming several keys:
    /// ``segments.main = 1g (chi.yaml:3)``.
    fn describe(&self, key: &str, value: impl fmt::Display) -> String {
        format!("`{key}` = {value} ({})", self.of(key).at)
    }

    /// An error of kind `kind` at `key`.
    fn error(
        &self,
        kind: fn(Box<ErrorDetail>) -> ConfigError,
        key: &str,
        message: String,
    ) -> ConfigError {
        let origin = self.of(key);
        kind(detail(
            origin.at,
            key.to_owned(),
            message,
            String::new(),
            origin.snippet,
        ))
    }
}

fn near_key(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" near key `{key}`")
    }
}

fn detail(
    at: Pos,
    key: String,
    message: String,
    expected: String,
    snippet: Snippet,
) -> Box<ErrorDetail> {
    Box::new(ErrorDetail {
        at,
        key,
        message,
        expected,
        snippet,
    })
}

impl ConfigError {
    /// Where the error is and what it is about, for errors in a config file's content.
    pub fn detail(&self) -> Option<&ErrorDetail> {
        match self {
            ConfigError::Syntax(detail)
            | ConfigError::UnknownKey(detail)
            | ConfigError::WrongType(detail)
            | ConfigError::BadValue(detail)
            | ConfigError::Resources(detail) => Some(detail),
            ConfigError::Read { .. } | ConfigError::Hostfile { .. } => None,
        }
    }

    /// The file the error is in (config file or hostfile).
    pub fn file(&self) -> Option<&str> {
        match self {
            ConfigError::Read { path, .. } => path.to_str(),
            ConfigError::Hostfile { file, .. } => Some(file),
            _ => self.detail().map(|d| d.at.file.as_str()),
        }
    }

    /// The 1-based line of the error in [`ConfigError::file`], when known.
    pub fn line(&self) -> Option<u64> {
        let line = match self {
            ConfigError::Read { .. } => 0,
            ConfigError::Hostfile { line, .. } => *line as u64,
            _ => self.detail().map_or(0, |d| d.at.line),
        };
        (line > 0).then_some(line)
    }

    /// The dotted path of the key concerned, when known.
    pub fn key(&self) -> Option<&str> {
        self.detail()
            .map(|d| d.key.as_str())
            .filter(|k| !k.is_empty())
    }
}

// ---------------------------------------------------------------------------------
// Raw (partial) documents.

/// A value with its place in the document, and whether the user's file set it.
#[derive(Debug, Clone)]
struct Item<T> {
    value: T,
    line: u64,
    column: u64,
    from_user: bool,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Item<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<T>::deserialize(deserializer)?;
        Ok(Item {
            value: spanned.value,
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
            from_user: false,
        })
    }
}

type Leaf<T> = Option<Item<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    port: Leaf<u16>,
    hostfile: Leaf<PathBuf>,
    segments: Option<RawSegments>,
    workers: Option<RawWorkers>,
    queue: Option<RawQueue>,
    coroutine: Option<RawCoroutine>,
    module_path: Leaf<Vec<Item<PathBuf>>>,
    logging: Option<RawLogging>,
    idle: Option<RawIdle>,
    client_wait_timeout: Leaf<DurationValue>,
    reaper: Option<RawReaper>,
    supervisor: Option<RawSupervisor>,
    /// `~` here means "no deadline", not "the default": a present key is `Some`.
    #[serde(default, deserialize_with = "present")]
    task_deadline: Leaf<OptionalDuration>,
    control: Option<RawControl>,
    compose: Leaf<Vec<RawPool>>,
}

/// A key whose presence matters even when its value is null.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Leaf<T>, D::Error> {
    Item::deserialize(deserializer).map(Some)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegments {
    main: Leaf<ByteSize>,
    client_data: Leaf<ByteSize>,
    runtime_data: Leaf<ByteSize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkers {
    low_latency: Leaf<u32>,
    high_latency: Leaf<u32>,
    reinforcement: Leaf<u32>,
    process_reaper: Leaf<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    lanes: Leaf<u32>,
    depth: Leaf<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCoroutine {
    stack_size: Leaf<ByteSize>,
    max_live: Leaf<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReaper {
    interval: Leaf<DurationValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSupervisor {
    stall_timeout: Leaf<DurationValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    max_clients: Leaf<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    level: Leaf<LogLevel>,
    file: Leaf<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdle {
    busy_poll: Leaf<DurationValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    module: Item<String>,
    name: Item<String>,
    query: Item<PoolQuery>,
    id: Leaf<u64>,
    args: Leaf<String>,
}

/// Merging the user's document (`over`) over the defaults (`self`).
trait Merge {
    fn merge(self, over: Self) -> Self;
}

impl<T> Merge for Leaf<T> {
    fn merge(self, over: Self) -> Self {
        match over {
            Some(mut item) => {
                item.from_user = true;
                Some(item)
            }
            None => self,
        }
    }
}

fn merge_section<S: Merge + Default>(base: Option<S>, over: Option<S>) -> Option<S> {
    match (base, over) {
        (base, None) => base,
        (base, Some(over)) => Some(base.unwrap_or_default().merge(over)),
    }
}

/// `impl Merge` for a raw struct: `leaves` are merged value by value, `sections`
/// recursively.
macro_rules! impl_merge {
    ($ty:ident { $($leaf:ident),* $(,)? } $(sections { $($section:ident),* $(,)? })?) => {
        impl Merge for $ty {
            fn merge(self, over: Self) -> Self {
                $ty {
                    $($leaf: self.$leaf.merge(over.$leaf),)*
                    $($($section: merge_section(self.$section, over.$section),)*)?
                }
            }
        }
    };
}

impl_merge!(RawConfig { port, hostfile, module_path, client_wait_timeout, task_deadline, compose }
    sections { segments, workers, queue, coroutine, logging, idle, reaper, supervisor, control });
impl_merge!(RawSegments {
    main,
    client_data,
    runtime_data
});
impl_merge!(RawWorkers {
    low_latency,
    high_latency,
    reinforcement,
    process_reaper
});
impl_merge!(RawQueue { lanes, depth });
impl_merge!(RawCoroutine {
    stack_size,
    max_live
});
impl_merge!(RawReaper { interval });
impl_merge!(RawSupervisor { stall_timeout });
impl_merge!(RawControl { max_clients });
impl_merge!(RawLogging { level, file });
impl_merge!(RawIdle { busy_poll });

// ---------------------------------------------------------------------------------
// Parsing one document.

/// What each key takes, for "wrong type" messages. Keys are dotted paths with list
/// indices written `[]`.
fn expected_for(key: &str) -> &'static str {
    match key {
        "" => "a mapping of configuration keys (see the default configuration)",
        "port" => "a TCP port number, 1 to 65535",
        "hostfile" => "the path of a hostfile",
        "segments" => "a mapping with keys main, client_data, runtime_data",
        "segments.main" | "segments.client_data" | "segments.runtime_data" => {
            "a size: a number of bytes, or a number with a unit k, m, g or t (e.g. 256m, 1g)"
        }
        "workers" => "a mapping with keys low_latency, high_latency, reinforcement, process_reaper",
        "workers.low_latency"
        | "workers.high_latency"
        | "workers.reinforcement"
        | "workers.process_reaper" => "a whole number of threads",
        "queue" => "a mapping with keys lanes, depth",
        "queue.lanes" => "a whole number of lanes, or ~ for one per low-latency worker",
        "queue.depth" => "a whole number of tasks per lane (a power of two, at least 2)",
        "coroutine" => "a mapping with keys stack_size, max_live",
        "coroutine.stack_size" => "a size such as 64k or 1m",
        "coroutine.max_live" => "a whole number of coroutines per worker, at least 1",
        "reaper" => "a mapping with key interval",
        "supervisor" => "a mapping with key stall_timeout",
        "control" => "a mapping with key max_clients",
        "control.max_clients" => "a whole number of clients, at least 1",
        "task_deadline" => {
            "a duration with a unit ns, us, ms, s, m or h (e.g. 60s), or ~ or 0 for none"
        }
        "module_path" => "a list of directories, e.g. [/opt/chimods, ./build/lib]",
        "module_path[]" => "the path of a directory",
        "logging" => "a mapping with keys level, file",
        "logging.level" => "one of error, warn, info, debug, trace",
        "logging.file" => "the path of a log file",
        "idle" => "a mapping with key busy_poll",
        "idle.busy_poll"
        | "client_wait_timeout"
        | "reaper.interval"
        | "supervisor.stall_timeout" => {
            "a duration: a number with a unit ns, us, ms, s, m or h (e.g. 100us, 30s)"
        }
        "compose" => {
            "a list of pools, each a mapping with keys module, name, query and optionally id, args"
        }
        "compose[]" => "a mapping with keys module, name, query and optionally id, args",
        "compose[].module" => "a ChiMod library name (a string)",
        "compose[].name" => "a pool name (a string)",
        "compose[].query" => "local or global",
        "compose[].id" => "a pool id: a whole number other than 0 and 1",
        "compose[].args" => "a string",
        _ => "a value of another type (see the default configuration)",
    }
}

/// `compose[3].name` → `compose[].name`.
fn key_pattern(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push(c);
            }
            ']' => {
                in_index = false;
                out.push(c);
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// The dotted key path of a serde path. `Spanned` adds a `value` segment under each
/// value it wraps; those are dropped (no config key is named `value`), except the last
/// segment of an unknown-key error, which is the key the user wrote.
fn key_from_path(path: &serde_path_to_error::Path, keep_last: bool) -> Option<String> {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let mut key = String::new();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: name } if name == "value" && !(last && keep_last) => {}
            Segment::Map { key: name } | Segment::Enum { variant: name } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(name);
            }
            Segment::Unknown => return None,
        }
    }
    Some(key)
}

/// The key path at `line` of a block-style YAML text, found from indentation: the
/// fallback when the deserializer could not tell (syntax errors, duplicate keys).
fn key_path_at(text: &str, line: u64) -> Option<String> {
    fn key_of(content: &str) -> Option<String> {
        let content = content.split(" #").next().unwrap_or(content);
        let colon = content
            .char_indices()
            .find(|&(i, c)| c == ':' && content[i + 1..].chars().next().is_none_or(|n| n == ' '))
            .map(|(i, _)| i)?;
        let key = content[..colon]
            .trim()
            .trim_matches(|c| c == '"' || c == '\'');
        let plain = !key.is_empty() && !key.starts_with(['{', '[', '-', '#']);
        plain.then(|| key.to_owned())
    }
    fn dash_item(content: &str) -> Option<&str> {
        if content == "-" {
            Some("")
        } else {
            content.strip_prefix("- ")
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let target = usize::try_from(line).ok()?.checked_sub(1)?;
    if target >= lines.len() {
        return None;
    }
    let mut reversed: Vec<String> = Vec::new();
    let mut limit = usize::MAX;
    let mut skip_dashes_at: Option<usize> = None;
    for i in (0..=target).rev() {
        let raw = lines[i];
        let content = raw.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = raw.len() - content.len();
        if indent >= limit || (skip_dashes_at == Some(indent) && dash_item(content).is_some()) {
            continue;
        }
        if let Some(rest) = dash_item(content) {
            if i == target
                && let Some(key) = key_of(rest)
            {
                reversed.push(key);
            }
            let index = lines[..i]
                .iter()
                .rev()
                .map(|l| (l.len() - l.trim_start().len(), l.trim_start()))
                .filter(|(_, c)| !c.is_empty() && !c.starts_with('#'))
                .take_while(|&(ind, _)| ind >= indent)
                .filter(|&(ind, c)| ind == indent && dash_item(c).is_some())
                .count();
            reversed.push(format!("[{index}]"));
            // A list's parent key may sit at the same indentation as its dashes.
            limit = indent + 1;
            skip_dashes_at = Some(indent);
        } else {
            if let Some(key) = key_of(content) {
                reversed.push(key);
            }
            limit = indent;
            skip_dashes_at = None;
        }
        if limit == 0 {
            break;
        }
    }
    let mut key = String::new();
    for segment in reversed.iter().rev() {
        if !key.is_empty() && !segment.starts_with('[') {
            key.push('.');
        }
        key.push_str(segment);
    }
    (!key.is_empty()).then_some(key)
}

/// The source text under a location's span, if short.
fn spanned_text(text: &str, location: &serde_saphyr::Location) -> Option<String> {
    let span = location.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let slice = text.get(start..start.checked_add(len)?)?;
    (!slice.is_empty() && slice.len() <= 60).then(|| slice.to_owned())
}

/// Turns a serde-saphyr error into a [`ConfigError`] for `file`.
fn convert_error(
    error: &serde_saphyr::Error,
    path: &serde_path_to_error::Path,
    text: &str,
    file: &str,
) -> ConfigError {
    use serde_saphyr::Error as E;
    let inner = error.without_snippet();
    let location = error.location();
    let (line, column) = location.map_or((0, 0), |l| (l.line(), l.column()));
    let at = Pos {
        file: file.to_owned(),
        line,
        column,
    };
    let snippet = Snippet::of(text, line, column);
    let message = UserMessageFormatter.format_message(inner).into_owned();
    let tracked_key = |keep_last: bool| {
        key_from_path(path, keep_last)
            .filter(|k| !k.is_empty() || line <= 1)
            .or_else(|| key_path_at(text, line))
            .unwrap_or_default()
    };
    let shown = |key: String| {
        if key.is_empty() {
            "(top level)".to_owned()
        } else {
            key
        }
    };
    match inner {
        E::SerdeUnknownField { expected, .. } => ConfigError::UnknownKey(detail(
            at,
            shown(tracked_key(true)),
            message,
            expected.join(", "),
            snippet,
        )),
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => ConfigError::BadValue(detail(
            at,
            shown(tracked_key(false)),
            format!(
                "unknown value `{variant}`; expected one of: {}",
                expected.join(", ")
            ),
            String::new(),
            snippet,
        )),
        E::SerdeMissingField { field, .. } => {
            let key = tracked_key(false);
            let message = format!(
                "missing key `{field}`; expected {}",
                expected_for(&key_pattern(&key))
            );
            ConfigError::BadValue(detail(at, shown(key), message, String::new(), snippet))
        }
        E::SerdeInvalidValue { .. } | E::Message { .. } => ConfigError::BadValue(detail(
            at,
            shown(tracked_key(false)),
            message,
            String::new(),
            snippet,
        )),
        E::SerdeInvalidType { .. }
        | E::SerdeInvalidLength { .. }
        | E::InvalidScalar { .. }
        | E::Unexpected { .. }
        | E::NullIntoString { .. }
        | E::InvalidBooleanStrict { .. }
        | E::UnexpectedValueForUnit { .. } => {
            let key = tracked_key(false);
            let expected = expected_for(&key_pattern(&key)).to_owned();
            let message = match inner {
                E::InvalidScalar { ty, .. } => {
                    match location.and_then(|l| spanned_text(text, &l)) {
                        Some(found) if !found.contains('\n') => {
                            format!("`{found}` is not a valid {ty}")
                        }
                        Some(_) => format!(
                            "the value runs over several lines and is not a valid {ty} \
                         (check the indentation of the lines below it)"
                        ),
                        None => format!("not a valid {ty}"),
                    }
                }
                E::Unexpected { .. } => "wrong type of value".to_owned(),
                E::NullIntoString { .. } => "empty (null) value".to_owned(),
                _ => message,
            };
            ConfigError::WrongType(detail(at, shown(key), message, expected, snippet))
        }
        _ => {
            // A parser error at the end of the text points past the last line: name the
            // key and show the line where the text ends.
            let last = text.lines().count() as u64;
            let line_shown = line.min(last);
            let snippet = if line > last {
                Snippet::of(text, line_shown, 0)
            } else {
                snippet
            };
            let key = key_path_at(text, line_shown).unwrap_or_default();
            ConfigError::Syntax(detail(at, key, message, String::new(), snippet))
        }
    }
}

fn parse_raw(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
    let mut track = serde_path_to_error::Track::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |deserializer| {
        RawConfig::deserialize(serde_path_to_error::Deserializer::new(
            deserializer,
            &mut track,
        ))
    });
    result.map_err(|error| convert_error(&error, &track.path(), text, file))
}

// ---------------------------------------------------------------------------------
// Checking values and building the Config.

struct Source<'a> {
    name: &'a str,
    text: &'a str,
    /// Relative paths in this source are resolved against this directory.
    base_dir: Option<&'a Path>,
}

struct Builder<'a> {
    defaults: Source<'a>,
    user: Source<'a>,
    /// Where the keys checked were set; handed to the [`Config`].
    origins: RefCell<KeyOrigins>,
}

/// `" (why)"`, or nothing for an empty `why`.
fn parenthesised(why: &str) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!(" ({why})")
    }
}

/// The worker keys with their values.
fn worker_keys(w: &WorkerCounts) -> [(&'static str, u64); 4] {
    [
        ("workers.low_latency", u64::from(w.low_latency)),
        ("workers.high_latency", u64::from(w.high_latency)),
        ("workers.reinforcement", u64::from(w.reinforcement)),
        ("workers.process_reaper", u64::from(w.process_reaper)),
    ]
}

/// `a 1 + b 2`.
fn sum_of(keys: &[(&str, u64)]) -> String {
    keys.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

impl Builder<'_> {
    fn source(&self, from_user: bool) -> &Source<'_> {
        if from_user {
            &self.user
        } else {
            &self.defaults
        }
    }

    fn pos<T>(&self, from_user: bool, item: &Item<T>) -> Pos {
        let source = self.source(from_user);
        Pos {
            file: source.name.to_owned(),
            line: item.line,
            column: item.column,
        }
    }

    /// A [`ConfigError::BadValue`] at `item`, in the user's file or the defaults.
    fn bad_in<T>(
        &self,
        from_user: bool,
        item: &Item<T>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let source = self.source(from_user);
        ConfigError::BadValue(detail(
            self.pos(from_user, item),
            key.to_owned(),
            message.into(),
            String::new(),
            Snippet::of(source.text, item.line, item.column),
        ))
    }

    fn bad<T>(&self, item: &Item<T>, key: &str, message: impl Into<String>) -> ConfigError {
        self.bad_in(item.from_user, item, key, message)
    }

    /// A value the defaults must provide.
    fn need<T>(&self, leaf: Leaf<T>, key: &str) -> Result<Item<T>, ConfigError> {
        leaf.ok_or_else(|| {
            let at = Pos {
                file: DEFAULT_SOURCE_NAME.to_owned(),
                line: 0,
                column: 0,
            };
            let message = "missing from the built-in defaults".to_owned();
            ConfigError::BadValue(detail(
                at,
                key.to_owned(),
                message,
                String::new(),
                Snippet::default(),
            ))
        })
    }

    fn resolve(&self, from_user: bool, path: PathBuf) -> PathBuf {
        match self.source(from_user).base_dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        }
    }

    /// Remembers where `key` was set, for errors found after parsing.
    fn note<T>(&self, key: &str, item: &Item<T>) {
        let source = self.source(item.from_user);
        let origin = Origin {
            at: self.pos(item.from_user, item),
            snippet: Snippet::of(source.text, item.line, item.column),
            from_user: item.from_user,
        };
        self.origins.borrow_mut().0.insert(key.to_owned(), origin);
    }

    /// A [`ConfigError::BadValue`] at a key already noted.
    fn bad_key(&self, key: &str, message: String) -> ConfigError {
        self.origins
            .borrow()
            .error(ConfigError::BadValue, key, message)
    }

    /// A size from `min` to `max`; `why` (may be empty) says where `min` comes from.
    fn size(
        &self,
        leaf: Leaf<ByteSize>,
        key: &str,
        (min, max): (u64, u64),
        why: &str,
    ) -> Result<(u64, Item<ByteSize>), ConfigError> {
        let item = self.need(leaf, key)?;
        self.note(key, &item);
        let bytes = item.value.0;
        if bytes < min || bytes > max {
            return Err(self.bad(
                &item,
                key,
                format!(
                    "{bytes} bytes is out of range; expected a size from {} to {}{}",
                    format_size(min),
                    format_size(max),
                    parenthesised(why)
                ),
            ));
        }
        Ok((bytes, item))
    }

    /// A whole number from `min` to `max`; `why` (may be empty) says where the
    /// bounds come from.
    fn count(
        &self,
        leaf: Leaf<u32>,
        key: &str,
        (min, max): (u32, u32),
        why: &str,
    ) -> Result<u32, ConfigError> {
        let item = self.need(leaf, key)?;
        self.note(key, &item);
        if item.value < min || item.value > max {
            return Err(self.bad(
                &item,
                key,
                format!(
                    "{} is out of range; expected {min} to {max}{}",
                    item.value,
                    parenthesised(why)
                ),
            ));
        }
        Ok(item.value)
    }

    /// A duration from `min` to `max`.
    fn duration(
        &self,
        leaf: Leaf<DurationValue>,
        key: &str,
        (min, max): (Duration, Duration),
    ) -> Result<Duration, ConfigError> {
        let item = self.need(leaf, key)?;
        self.note(key, &item);
        let value = item.value.0;
        if value < min || value > max {
            return Err(self.bad(
                &item,
                key,
                format!("{value:?} is out of range; expected a duration from {min:?} to {max:?}"),
            ));
        }
        Ok(value)
    }

    fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let port = self.need(raw.port, "port")?;
        if port.value == 0 {
            return Err(self.bad(
                &port,
                "port",
                "port 0 is not allowed (clients find the runtime at a fixed port); expected 1 to 65535",
            ));
        }

        let hostfile = raw
            .hostfile
            .filter(|item| !item.value.as_os_str().is_empty());
        let (hostfile, hosts) = match hostfile {
            Some(item) => {
                let path = self.resolve(item.from_user, item.value.clone());
                let origin = format!(
                    " (named by key `hostfile` at {})",
                    self.pos(item.from_user, &item)
                );
                let hosts = load_hostfile(&path).map_err(|e| hostfile::with_origin(e, origin))?;
                (Some(path), hosts)
            }
            None => (None, vec!["127.0.0.1".to_owned()]),
        };

        let segments = raw.segments.unwrap_or_default();
        // The main segment's minimum depends on the queue: checked below.
        let (main, _) = self.size(segments.main, "segments.main", (0, MAX_SEGMENT_SIZE), "")?;
        let data_range = (Segment::min_size(), MAX_SEGMENT_SIZE);
        let data_why = "the smallest holds the allocator metadata and one 64 KiB page";
        let segments = SegmentSizes {
            main,
            client_data: self
                .size(
                    segments.client_data,
                    "segments.client_data",
                    data_range,
                    data_why,
                )?
                .0,
            runtime_data: self
                .size(
                    segments.runtime_data,
                    "segments.runtime_data",
                    data_range,
                    data_why,
                )?
                .0,
        };

        let workers = self.workers(raw.workers.unwrap_or_default())?;

        let queue = raw.queue.unwrap_or_default();
        let lanes = match queue.lanes {
            Some(item) => {
                self.note("queue.lanes", &item);
                if item.value == 0 || item.value > MAX_LANES {
                    return Err(self.bad(
                        &item,
                        "queue.lanes",
                        format!(
                            "{} is out of range; expected 1 to {MAX_LANES}, or ~ for one lane per low-latency worker",
                            item.value
                        ),
                    ));
                }
                item.value
            }
            None => workers.low_latency.min(MAX_LANES),
        };
        let depth = self.need(queue.depth, "queue.depth")?;
        self.note("queue.depth", &depth);
        if depth.value < MIN_QUEUE_DEPTH || depth.value > MAX_QUEUE_DEPTH {
            return Err(self.bad(
                &depth,
                "queue.depth",
                format!(
                    "{} is out of range; expected a power of two from {MIN_QUEUE_DEPTH} to {MAX_QUEUE_DEPTH}",
                    depth.value
                ),
            ));
        }
        let rounded_depth = depth.value.next_power_of_two();
        if rounded_depth != depth.value {
            tracing::warn!(
                at = %self.pos(depth.from_user, &depth),
                "queue.depth {} is not a power of two; using {rounded_depth}",
                depth.value
            );
        }
        // The runtime gives the high-latency priority one lane per high-latency
        // worker (`Runtime::start`).
        self.check_main_segment(main, lanes, workers.high_latency, rounded_depth)?;

        let coroutine = raw.coroutine.unwrap_or_default();
        let (stack, stack_item) = self.size(
            coroutine.stack_size,
            "coroutine.stack_size",
            (MIN_STACK_SIZE as u64, MAX_STACK_SIZE as u64),
            "",
        )?;
        let stack = usize::try_from(stack).unwrap_or(MAX_STACK_SIZE);
        let stack_size = stack.next_multiple_of(STACK_SIZE_GRANULE);
        if stack_size != stack {
            tracing::debug!(
                at = %self.pos(stack_item.from_user, &stack_item),
                "coroutine.stack_size {stack} rounded up to {stack_size}"
            );
        }
        let max_live = self.count(
            coroutine.max_live,
            "coroutine.max_live",
            (1, MAX_LIVE_COROUTINES),
            "",
        )?;

        let module_path_item = self.need(raw.module_path, "module_path")?;
        let mut module_path = Vec::with_capacity(module_path_item.value.len());
        for (i, dir) in module_path_item.value.into_iter().enumerate() {
            if dir.value.as_os_str().is_empty() {
                return Err(self.bad_in(
                    module_path_item.from_user,
                    &dir,
                    &format!("module_path[{i}]"),
                    "empty directory name; expected the path of a directory",
                ));
            }
            module_path.push(self.resolve(module_path_item.from_user, dir.value));
        }

        let logging = raw.logging.unwrap_or_default();
        let logging = LoggingConfig {
            level: self.need(logging.level, "logging.level")?.value,
            file: logging
                .file
                .map(|item| self.resolve(item.from_user, item.value)),
        };

        let busy_poll = self.need(raw.idle.unwrap_or_default().busy_poll, "idle.busy_poll")?;
        if busy_poll.value.0 > MAX_BUSY_POLL {
            return Err(self.bad(
                &busy_poll,
                "idle.busy_poll",
                format!(
                    "{:?} is too long (an idle worker would spin that long); expected at most {MAX_BUSY_POLL:?}",
                    busy_poll.value.0
                ),
            ));
        }

        let timeout = self.need(raw.client_wait_timeout, "client_wait_timeout")?;
        if timeout.value.0.is_zero() {
            return Err(self.bad(
                &timeout,
                "client_wait_timeout",
                "must be longer than 0; expected a duration such as 30s",
            ));
        }

        let reaper = ReaperConfig {
            interval: self.duration(
                raw.reaper.unwrap_or_default().interval,
                "reaper.interval",
                REAPER_INTERVAL_RANGE,
            )?,
        };
        let supervisor = SupervisorConfig {
            stall_timeout: self.duration(
                raw.supervisor.unwrap_or_default().stall_timeout,
                "supervisor.stall_timeout",
                STALL_TIMEOUT_RANGE,
            )?,
        };
        let task_deadline = self.need(raw.task_deadline, "task_deadline")?;
        self.note("task_deadline", &task_deadline);

        let threads = workers.total();
        let control = ControlConfig {
            max_clients: self.count(
                raw.control.unwrap_or_default().max_clients,
                "control.max_clients",
                (1, max_clients_for(threads)),
                &format!(
                    "each client holds one of the main segment's {MAX_OWNERS} allocator owner slots; \
                     the runtime, its {threads} worker threads and up to {} module libraries hold others",
                    footprint::OWNER_SLOTS_FOR_MODULES
                ),
            )?,
        };

        let compose = self.compose(self.need(raw.compose, "compose")?)?;

        Ok(Config {
            port: port.value,
            hostfile,
            hosts,
            segments,
            workers,
            queue: QueueConfig {
                lanes,
                depth: rounded_depth,
            },
            coroutine: CoroutineConfig {
                stack_size,
                max_live,
            },
            module_path,
            logging,
            idle: IdleConfig {
                busy_poll: busy_poll.value.0,
            },
            client_wait_timeout: timeout.value.0,
            reaper,
            supervisor,
            task_deadline: task_deadline.value.0,
            control,
            compose,
            source: None,
            origins: self.origins.take(),
        })
    }

    fn workers(&self, raw: RawWorkers) -> Result<WorkerCounts, ConfigError> {
        let why = format!("at most {MAX_WORKER_THREADS} worker threads in all");
        let workers = WorkerCounts {
            low_latency: self.count(
                raw.low_latency,
                "workers.low_latency",
                (1, MAX_WORKERS),
                &why,
            )?,
            high_latency: self.count(
                raw.high_latency,
                "workers.high_latency",
                (1, MAX_WORKERS),
                &why,
            )?,
            reinforcement: self.count(
                raw.reinforcement,
                "workers.reinforcement",
                (0, MAX_WORKERS),
                &why,
            )?,
            process_reaper: self.count(
                raw.process_reaper,
                "workers.process_reaper",
                (0, 1),
                "one reaper serves the whole node; 0 runs none",
            )?,
        };
        let total = u64::from(workers.low_latency)
            + u64::from(workers.high_latency)
            + u64::from(workers.reinforcement)
            + u64::from(workers.process_reaper);
        if total > u64::from(MAX_WORKER_THREADS) {
            let keys = worker_keys(&workers);
            let origins = self.origins.borrow();
            let key = origins.blame(&keys);
            let message = format!(
                "{total} worker threads in all is more than {MAX_WORKER_THREADS} ({}); \
                 each holds one of the main segment's {MAX_OWNERS} allocator owner slots, \
                 which clients need too: lower the worker counts",
                sum_of(&keys)
            );
            return Err(origins.error(ConfigError::BadValue, key, message));
        }
        Ok(workers)
    }

    /// The main segment must hold its allocator metadata, the process queue of
    /// `low` + `high` lanes × `depth`, the runtime block and room for tasks
    /// ([`MainSegmentNeeds`]).
    fn check_main_segment(
        &self,
        main: u64,
        low: u32,
        high: u32,
        depth: u32,
    ) -> Result<(), ConfigError> {
        let Some(needs) = MainSegmentNeeds::of(low, high, depth) else {
            return Err(self.bad_key(
                "queue.depth",
                format!("{low} + {high} lanes of {depth} tasks is too large a queue"),
            ));
        };
        if main >= needs.min_size {
            return Ok(());
        }
        // Name segments.main unless the user left it and set the queue's shape.
        let origins = self.origins.borrow();
        let queue_keys = [
            "queue.depth",
            "queue.lanes",
            "workers.low_latency",
            "workers.high_latency",
        ];
        let key = if origins.set_by_user("segments.main") {
            "segments.main"
        } else {
            queue_keys
                .into_iter()
                .find(|k| origins.set_by_user(k))
                .unwrap_or("segments.main")
        };
        let mut message = format!(
            "segments.main is {}, but this configuration needs at least {} ({}): {} of segment \
             header and allocator metadata, {} for the process queue ({} lanes of {depth} \
             tasks), {} for the runtime block and {} of room for tasks; set segments.main to \
             at least {}",
            format_size(main),
            format_size(needs.min_size),
            format_size_approx(needs.min_size),
            format_size_approx(needs.metadata),
            format_size_approx(needs.queue),
            low + high,
            format_size_approx(needs.runtime_block),
            format_size_approx(needs.tasks),
            format_size(needs.min_size),
        );
        if needs.queue > needs.tasks {
            message.push_str(", or lower queue.depth or queue.lanes");
        }
        Err(origins.error(ConfigError::BadValue, key, message))
    }

    fn compose(&self, list: Item<Vec<RawPool>>) -> Result<Vec<PoolSpec>, ConfigError> {
        let user = list.from_user;
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut ids: HashMap<u64, usize> = HashMap::new();
        let mut pools = Vec::with_capacity(list.value.len());
        for (i, pool) in list.value.into_iter().enumerate() {
            let key = |field: &str| format!("compose[{i}].{field}");
            let module = pool.module.value.trim();
            if module.is_empty() || module.contains(char::is_whitespace) {
                return Err(self.bad_in(
                    user,
                    &pool.module,
                    &key("module"),
                    format!("`{module}` is not a ChiMod library name; expected a name such as chimaera_bdev"),
                ));
            }
            let name = pool.name.value.trim();
            if name.is_empty() {
                return Err(self.bad_in(
                    user,
                    &pool.name,
                    &key("name"),
                    "empty pool name; expected a name",
                ));
            }
            if let Some(first) = names.insert(name.to_owned(), i) {
                return Err(self.bad_in(
                    user,
                    &pool.name,
                    &key("name"),
                    format!("pool name `{name}` is already used by compose[{first}]; expected a unique name"),
                ));
            }
            if let Some(id) = &pool.id {
                if RESERVED_POOL_IDS.contains(&id.value) {
                    return Err(self.bad_in(
                        user,
                        id,
                        &key("id"),
                        format!("pool id {} is reserved (0: no pool, 1: the admin pool); expected another id", id.value),
                    ));
                }
                if let Some(first) = ids.insert(id.value, i) {
                    return Err(self.bad_in(
                        user,
                        id,
                        &key("id"),
                        format!(
                            "pool id {} is already used by compose[{first}]; expected a unique id",
                            id.value
                        ),
                    ));
                }
            }
            pools.push(PoolSpec {
                module: module.to_owned(),
                name: name.to_owned(),
                query: pool.query.value,
                id: pool.id.map(|id| id.value),
                args: pool.args.map(|args| args.value),
            });
        }
        Ok(pools)
    }
}

// ---------------------------------------------------------------------------------
// Loading.

impl Config {
    /// The built-in default configuration file, commented: what users copy to start
    /// their own.
    pub fn default_yaml() -> &'static str {
        DEFAULT_YAML
    }

    /// The defaults alone.
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::from_yaml_override("", DEFAULT_SOURCE_NAME)
    }

    /// Loads the configuration: the file named by `CHI_SERVER_CONF` over the defaults,
    /// or the defaults alone when the variable is unset or empty.
    pub fn load() -> Result<Config, ConfigError> {
        match std::env::var_os(ENV_SERVER_CONF) {
            Some(path) if !path.is_empty() => {
                Config::load_file(Path::new(&path), &format!(" (named by {ENV_SERVER_CONF})"))
            }
            _ => {
                tracing::debug!("{ENV_SERVER_CONF} is not set; using the default configuration");
                Config::defaults()
            }
        }
    }

    /// Loads the file at `path` over the defaults.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        Config::load_file(path.as_ref(), "")
    }

    fn load_file(path: &Path, origin: &str) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            what: "config file",
            path: path.to_path_buf(),
            origin: origin.to_owned(),
            source,
        })?;
        let config = Config::from_yaml_override(&text, &path.display().to_string())?;
        tracing::info!(file = %path.display(), "loaded the runtime configuration");
        Ok(config)
    }

    /// Applies the YAML `text` over the defaults. `source_name` names the text in
    /// errors; when it is a path, relative paths in the text are resolved against its
    /// directory.
    pub fn from_yaml_override(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let defaults = parse_raw(DEFAULT_YAML, DEFAULT_SOURCE_NAME)?;
        let user = parse_raw(text, source_name)?;
        let is_path = source_name != DEFAULT_SOURCE_NAME && !source_name.starts_with('<');
        let base_dir = is_path
            .then(|| Path::new(source_name).parent())
            .flatten()
            .filter(|dir| !dir.as_os_str().is_empty());
        let builder = Builder {
            defaults: Source {
                name: DEFAULT_SOURCE_NAME,
                text: DEFAULT_YAML,
                base_dir: None,
            },
            user: Source {
                name: source_name,
                text,
                base_dir,
            },
            origins: RefCell::default(),
        };
        let mut config = builder.build(defaults.merge(user))?;
        config.source = is_path.then(|| source_name.to_owned());
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(text: &str) -> Config {
        Config::from_yaml_override(text, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn error(text: &str) -> ConfigError {
        match Config::from_yaml_override(text, "test.yaml") {
            Ok(c) => panic!("{text:?} should fail, got {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults_parse_and_check() {
        let c = Config::defaults().unwrap();
        assert_eq!(c.port, 9513);
        assert_eq!(c.hostfile, None);
        assert_eq!(c.hosts, ["127.0.0.1"]);
        assert_eq!(c.segments.main, 1 << 30);
        assert_eq!(c.segments.client_data, 512 << 20);
        assert_eq!(
            c.workers,
            WorkerCounts {
                low_latency: 2,
                high_latency: 1,
                reinforcement: 1,
                process_reaper: 1
            }
        );
        assert_eq!(
            c.queue,
            QueueConfig {
                lanes: 2,
                depth: 1024
            }
        );
        assert_eq!(
            c.coroutine,
            CoroutineConfig {
                stack_size: 64 << 10,
                max_live: 256
            }
        );
        assert_eq!(c.reaper.interval, Duration::from_millis(200));
        assert_eq!(c.supervisor.stall_timeout, Duration::from_secs(10));
        assert_eq!(c.task_deadline, Some(Duration::from_secs(60)));
        assert_eq!(c.control.max_clients, 512);
        assert!(c.module_path.is_empty());
        assert_eq!(
            c.logging,
            LoggingConfig {
                level: LogLevel::Info,
                file: None
            }
        );
        assert_eq!(c.idle.busy_poll, Duration::from_micros(100));
        assert_eq!(c.client_wait_timeout, Duration::from_secs(30));
        assert!(c.compose.is_empty());
        assert_eq!(c.source, None);
        assert_eq!(
            Config::from_yaml_override("", DEFAULT_SOURCE_NAME).unwrap(),
            c
        );
    }

    #[test]
    fn equality_ignores_where_keys_were_written() {
        let defaults = Config::defaults().unwrap();
        let copy = Config::from_yaml_override(DEFAULT_YAML, "copy.yaml").unwrap();
        assert_eq!(copy.origins.of("segments.main").at.file, "copy.yaml");
        assert_eq!(
            Config {
                source: None,
                ..copy
            },
            defaults
        );
        assert_ne!(with("workers: {low_latency: 3}"), with(""));
    }

    #[test]
    fn every_default_key_is_set_and_commented() {
        // Each key of the default file has a comment line right above it.
        let lines: Vec<&str> = Config::default_yaml().lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let content = line.trim_start();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            assert!(
                i > 0 && lines[i - 1].trim_start().starts_with('#'),
                "key without a comment: {line}"
            );
        }
    }

    #[test]
    fn override_is_key_by_key() {
        let c = with("workers:\n  low_latency: 4\nsegments:\n  main: 64m\n");
        assert_eq!(c.workers.low_latency, 4);
        assert_eq!(c.workers.high_latency, 1);
        assert_eq!(c.segments.main, 64 << 20);
        assert_eq!(c.segments.runtime_data, 512 << 20);
        // lanes follows the low-latency workers unless set.
        assert_eq!(c.queue.lanes, 4);
        assert_eq!(with("queue: {lanes: 3}").queue.lanes, 3);
        assert_eq!(c.source.as_deref(), Some("test.yaml"));
    }

    #[test]
    fn null_keeps_the_default_and_empty_files_are_fine() {
        assert_eq!(with("port: ~\nworkers:\n").port, 9513);
        assert_eq!(with("# only a comment\n").port, 9513);
        assert_eq!(with("").workers.low_latency, 2);
    }

    #[test]
    fn all_keys() {
        let dir = std::env::temp_dir().join(format!("chi-config-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hosts"), "node[01-02]\n").unwrap();
        let file = dir.join("chi.yaml");
        let text = r#"
port: 7000
hostfile: hosts
segments: {main: 1073741824, client_data: 256MiB, runtime_data: "1.5g"}
workers: {low_latency: 3, high_latency: 2, reinforcement: 0, process_reaper: 1}
queue: {lanes: 5, depth: 100}
module_path: [mods, /abs/mods]
logging: {level: debug, file: chi.log}
idle: {busy_poll: 50us}
client_wait_timeout: 2m
task_deadline: 5m
reaper: {interval: 1s}
supervisor: {stall_timeout: 30s}
control: {max_clients: 100}
coroutine: {stack_size: 100k, max_live: 32}
compose:
  - module: chimaera_bdev
    name: ram
    query: global
    id: 200
    args: "ram:1g"
  - {module: example_mod, name: ex, query: local}
"#;
        std::fs::write(&file, text).unwrap();
        let c = Config::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.port, 7000);
        assert_eq!(c.hostfile, Some(dir.join("hosts")));
        assert_eq!(c.hosts, ["node01", "node02"]);
        assert_eq!(
            c.segments,
            SegmentSizes {
                main: 1 << 30,
                client_data: 256 << 20,
                runtime_data: 3 << 29
            }
        );
        assert_eq!(
            c.workers,
            WorkerCounts {
                low_latency: 3,
                high_latency: 2,
                reinforcement: 0,
                process_reaper: 1
            }
        );
        assert_eq!(
            c.queue,
            QueueConfig {
                lanes: 5,
                depth: 128
            }
        );
        assert_eq!(c.coroutine.stack_size, 100 << 10);
        assert_eq!(c.coroutine.max_live, 32);
        assert_eq!(c.task_deadline, Some(Duration::from_secs(300)));
        assert_eq!(c.reaper.interval, Duration::from_secs(1));
        assert_eq!(c.supervisor.stall_timeout, Duration::from_secs(30));
        assert_eq!(c.control.max_clients, 100);
        assert_eq!(
            c.module_path,
            [dir.join("mods"), PathBuf::from("/abs/mods")]
        );
        assert_eq!(
            c.logging,
            LoggingConfig {
                level: LogLevel::Debug,
                file: Some(dir.join("chi.log"))
            }
        );
        assert_eq!(c.idle.busy_poll, Duration::from_micros(50));
        assert_eq!(c.client_wait_timeout, Duration::from_secs(120));
        assert_eq!(
            c.compose,
            [
                PoolSpec {
                    module: "chimaera_bdev".into(),
                    name: "ram".into(),
                    query: PoolQuery::Global,
                    id: Some(200),
                    args: Some("ram:1g".into()),
                },
                PoolSpec {
                    module: "example_mod".into(),
                    name: "ex".into(),
                    query: PoolQuery::Local,
                    id: None,
                    args: None,
                },
            ]
        );
        assert_eq!(c.source, Some(file.display().to_string()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stack_size_rounds_up_to_pages() {
        assert_eq!(
            with("coroutine: {stack_size: 70000}").coroutine.stack_size,
            73728
        );
    }

    #[test]
    fn unknown_keys_name_line_and_path() {
        let e = error("port: 1\nworkers:\n  low_latency: 3\n  bogus: 4\n");
        assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e:?}");
        assert_eq!(
            (e.file(), e.line(), e.key()),
            (Some("test.yaml"), Some(4), Some("workers.bogus"))
        );
        let text = e.to_string();
        assert!(
            text.starts_with(
                "test.yaml:4:3: unknown key `workers.bogus`; expected one of: low_latency"
            ),
            "{text}"
        );
        assert!(text.contains("bogus: 4\n"), "{text}");

        let e = error("compose:\n  - module: a\n    name: b\n    query: local\n    nmae: c\n");
        assert_eq!(e.key(), Some("compose[0].nmae"));
        assert_eq!(e.line(), Some(5));
        assert_eq!(error("prot: 5\n").key(), Some("prot"));
    }

    #[test]
    fn wrong_types_say_what_is_expected() {
        let e = error("workers:\n  low_latency: many\n");
        assert!(matches!(e, ConfigError::WrongType { .. }), "{e:?}");
        assert_eq!((e.line(), e.key()), (Some(2), Some("workers.low_latency")));
        let text = e.to_string();
        assert!(text.contains("test.yaml:2:16: key `workers.low_latency`: `many` is not a valid u32; expected a whole number"), "{text}");

        let e = error("port: 70000\n");
        assert!(e.to_string().contains("expected a TCP port number"), "{e}");
        let e = error("workers: [1, 2]\n");
        assert_eq!(e.key(), Some("workers"));
        assert!(
            e.to_string()
                .contains("expected a mapping with keys low_latency"),
            "{e}"
        );
        let e = error("compose:\n  - module: [x]\n");
        assert_eq!(e.key(), Some("compose[0].module"));
        assert_eq!(error("- 1\n").key(), Some("(top level)"));
    }

    #[test]
    fn bad_values_from_parsing() {
        let e = error("segments:\n  main: 12 parsecs\n");
        assert!(matches!(e, ConfigError::BadValue { .. }), "{e:?}");
        assert_eq!((e.line(), e.key()), (Some(2), Some("segments.main")));
        assert!(e.to_string().contains("unknown unit `parsecs`"), "{e}");
        let e = error("idle:\n  busy_poll: 50\n");
        assert_eq!((e.line(), e.key()), (Some(2), Some("idle.busy_poll")));
        assert!(e.to_string().contains("has no unit"), "{e}");
        let e = error("segments:\n  main: -5\n");
        assert_eq!((e.line(), e.key()), (Some(2), Some("segments.main")));
        let e = error("segments:\n  main: [1]\n");
        assert_eq!((e.line(), e.key()), (Some(2), Some("segments.main")));
        let e = error("logging:\n  level: loud\n");
        assert_eq!((e.line(), e.key()), (Some(2), Some("logging.level")));
        assert!(
            e.to_string().contains("error, warn, info, debug, trace"),
            "{e}"
        );
        let e = error("compose:\n  - module: a\n    name: b\n    query: everywhere\n");
        assert_eq!((e.line(), e.key()), (Some(4), Some("compose[0].query")));
        let e = error("compose:\n  - module: a\n    name: b\n");
        assert!(e.to_string().contains("query"), "{e}");
        assert_eq!(e.key(), Some("compose[0]"));
    }

    #[test]
    fn bad_values_from_checks() {
        let cases: &[(&str, &str, u64, &str)] = &[
            ("port: 0\n", "port", 1, "port 0 is not allowed"),
            (
                "workers:\n  low_latency: 0\n",
                "workers.low_latency",
                2,
                "expected 1 to",
            ),
            (
                "workers:\n  high_latency: 0\n",
                "workers.high_latency",
                2,
                "expected 1 to",
            ),
            (
                "workers: {reinforcement: 5000}\n",
                "workers.reinforcement",
                1,
                "expected 0 to 256",
            ),
            (
                "queue:\n  depth: 0\n",
                "queue.depth",
                2,
                "expected a power of two from 2",
            ),
            ("queue:\n  depth: 1\n", "queue.depth", 2, "out of range"),
            ("queue:\n  lanes: 0\n", "queue.lanes", 2, "expected 1 to"),
            (
                "segments:\n  main: 0\n",
                "segments.main",
                2,
                "needs at least 1472k",
            ),
            (
                "segments:\n  client_data: 4k\n",
                "segments.client_data",
                2,
                "expected a size from 384k to 1t (the smallest holds the allocator metadata",
            ),
            (
                "workers:\n  process_reaper: 2\n",
                "workers.process_reaper",
                2,
                "expected 0 to 1 (one reaper serves the whole node",
            ),
            (
                "coroutine:\n  max_live: 0\n",
                "coroutine.max_live",
                2,
                "expected 1 to 65536",
            ),
            (
                "reaper:\n  interval: 5ms\n",
                "reaper.interval",
                2,
                "expected a duration from 10ms to 60s",
            ),
            (
                "reaper:\n  interval: 2m\n",
                "reaper.interval",
                2,
                "out of range",
            ),
            (
                "supervisor:\n  stall_timeout: 0s\n",
                "supervisor.stall_timeout",
                2,
                "from 100ms to 86400s",
            ),
            (
                "control:\n  max_clients: 0\n",
                "control.max_clients",
                2,
                "expected 1 to 986",
            ),
            (
                "control:\n  max_clients: 1000\n",
                "control.max_clients",
                2,
                "allocator owner slots",
            ),
            (
                "segments:\n  client_data: 2t\n",
                "segments.client_data",
                2,
                "out of range",
            ),
            (
                "coroutine:\n  stack_size: 8k\n",
                "coroutine.stack_size",
                2,
                "from 16k",
            ),
            ("idle:\n  busy_poll: 2s\n", "idle.busy_poll", 2, "too long"),
            (
                "client_wait_timeout: 0s\n",
                "client_wait_timeout",
                1,
                "longer than 0",
            ),
            (
                "module_path: [a, '']\n",
                "module_path[1]",
                1,
                "empty directory",
            ),
        ];
        for &(text, key, line, what) in cases {
            let e = error(text);
            assert!(matches!(e, ConfigError::BadValue { .. }), "{text:?}: {e:?}");
            assert_eq!(
                (e.file(), e.key(), e.line()),
                (Some("test.yaml"), Some(key), Some(line)),
                "{text:?}: {e}"
            );
            assert!(e.to_string().contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn main_segment_minimum() {
        let needs = |low, high, depth| MainSegmentNeeds::of(low, high, depth).unwrap().min_size;
        let min = needs(2, 1, 1024);
        assert_eq!(min, 1472 << 10);
        // The minimum itself is accepted, a page less is not.
        let ok = with(&format!("segments:\n  main: {min}\n"));
        assert_eq!(ok.segments.main, min);
        let e = error(&format!("segments:\n  main: {}\n", min - 4096));
        assert_eq!((e.line(), e.key()), (Some(2), Some("segments.main")));
        let text = e.to_string();
        for part in [
            "1468k",
            "at least 1472k (1.44 MiB)",
            "320 KiB of segment header and allocator metadata",
            "64 KiB for the process queue (3 lanes of 1024 tasks)",
            "64 KiB for the runtime block",
            "1 MiB of room for tasks",
            "set segments.main to at least 1472k",
        ] {
            assert!(text.contains(part), "{part:?} missing: {text}");
        }
        // The queue's shape counts: a deep queue in the default 1g is refused at
        // the key the user set, naming the queue keys to lower.
        let e = error("queue:\n  lanes: 64\n  depth: 1048576\n");
        assert_eq!((e.line(), e.key()), (Some(3), Some("queue.depth")));
        assert!(
            e.to_string()
                .contains("or lower queue.depth or queue.lanes"),
            "{e}"
        );
        let e =
            error("segments:\n  main: 16m\nworkers:\n  low_latency: 8\nqueue:\n  depth: 262144\n");
        assert_eq!((e.line(), e.key()), (Some(2), Some("segments.main")));
        assert_eq!(
            with("segments: {main: 64m}\nqueue: {lanes: 8, depth: 65536}")
                .queue
                .depth,
            65536
        );
    }

    #[test]
    fn worker_totals() {
        let e = error("workers:\n  low_latency: 1024\n  high_latency: 1024\n");
        assert_eq!((e.line(), e.key()), (Some(2), Some("workers.low_latency")));
        assert!(e.to_string().contains("expected 1 to 256"), "{e}");
        let e = error("workers:\n  low_latency: 200\n  high_latency: 100\n");
        assert_eq!((e.line(), e.key()), (Some(2), Some("workers.low_latency")));
        let text = e.to_string();
        assert!(
            text.contains("302 worker threads in all is more than 256"),
            "{text}"
        );
        assert!(text.contains("workers.high_latency 100"), "{text}");
        // The most clients shrink with the workers.
        let c = with("workers: {low_latency: 200, high_latency: 54, reinforcement: 1}");
        assert_eq!(c.workers.total(), 256);
        let e = error("workers: {low_latency: 200, high_latency: 54}\ncontrol: {max_clients: 736}");
        assert!(e.to_string().contains("expected 1 to 735"), "{e}");
    }

    #[test]
    fn task_deadline_none() {
        for text in [
            "task_deadline: ~\n",
            "task_deadline: 0\n",
            "task_deadline: null\n",
            "task_deadline: 0s\n",
        ] {
            assert_eq!(with(text).task_deadline, None, "{text}");
        }
        assert_eq!(
            with("port: 1\n").task_deadline,
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            with("task_deadline: 1.5s").task_deadline,
            Some(Duration::from_millis(1500))
        );
        let e = error("port: 1\ntask_deadline: 60\n");
        assert_eq!((e.line(), e.key()), (Some(2), Some("task_deadline")));
        assert!(e.to_string().contains("has no unit"), "{e}");
        let e = error("port: 1\ntask_deadline: [1s]\n");
        assert_eq!((e.line(), e.key()), (Some(2), Some("task_deadline")));
        let e = error("reaper:\n  intervall: 1s\n");
        assert_eq!((e.line(), e.key()), (Some(2), Some("reaper.intervall")));
        let e = error("control:\n  max_clients: lots\n");
        assert_eq!((e.line(), e.key()), (Some(2), Some("control.max_clients")));
        assert!(
            e.to_string().contains("expected a whole number of clients"),
            "{e}"
        );
    }

    #[test]
    fn compose_checks() {
        let pool =
            |name: &str, id: &str| format!("  - {{module: m, name: {name}, query: local{id}}}\n");
        let e = error(&format!("compose:\n{}{}", pool("a", ""), pool("a", "")));
        assert_eq!((e.key(), e.line()), (Some("compose[1].name"), Some(3)));
        assert!(e.to_string().contains("already used by compose[0]"), "{e}");
        let e = error(&format!("compose:\n{}", pool("a", ", id: 1")));
        assert_eq!(e.key(), Some("compose[0].id"));
        assert!(e.to_string().contains("reserved"), "{e}");
        let e = error(&format!(
            "compose:\n{}{}",
            pool("a", ", id: 20"),
            pool("b", ", id: 20")
        ));
        assert_eq!(e.key(), Some("compose[1].id"));
        let e = error("compose:\n  - {module: '', name: a, query: local}\n");
        assert_eq!(e.key(), Some("compose[0].module"));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = error("port: 1\nworkers:\n  low_latency: \"2\n");
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
        assert_eq!(e.file(), Some("test.yaml"));
        assert!(e.line().is_some(), "{e}");
        let e = error("port: 1\nport: 2\n");
        assert_eq!((e.line(), e.key()), (Some(2), Some("port")));
        let e = error("{port: 1\n");
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
    }

    #[test]
    fn key_paths_from_text() {
        let text = "a:\n  b:\n    c: 1\n  d: 2\nlist:\n  - x: 1\n    y: 2\n  - x: 3\n    z: 4\nflat:\n- p: 1\n- q: 2\n";
        assert_eq!(key_path_at(text, 3).as_deref(), Some("a.b.c"));
        assert_eq!(key_path_at(text, 4).as_deref(), Some("a.d"));
        assert_eq!(key_path_at(text, 7).as_deref(), Some("list[0].y"));
        assert_eq!(key_path_at(text, 8).as_deref(), Some("list[1].x"));
        assert_eq!(key_path_at(text, 9).as_deref(), Some("list[1].z"));
        assert_eq!(key_path_at(text, 12).as_deref(), Some("flat[1].q"));
        assert_eq!(key_path_at(text, 99), None);
    }

    #[test]
    fn hostfile_errors_name_the_key() {
        let e = error("hostfile: /nonexistent/chi-hosts\n");
        assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("/nonexistent/chi-hosts"), "{text}");
        assert!(text.contains("key `hostfile` at test.yaml:1:11"), "{text}");
    }

    #[test]
    fn log_levels() {
        assert_eq!(LogLevel::Warn.to_tracing(), tracing::Level::WARN);
        assert_eq!(LogLevel::Trace.to_string(), "trace");
        assert_eq!(PoolQuery::Global.to_string(), "global");
    }
}
