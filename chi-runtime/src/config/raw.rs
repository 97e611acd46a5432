//! Raw (partial) documents: the YAML as written, before any check.
//!
//! Both the defaults and the user's file are read into a [`RawConfig`] whose
//! every field is optional and remembers its line and column ([`Item`]). The
//! user's document is merged over the defaults' key by key ([`Merge`]), nested
//! keys too; lists are replaced whole.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

use super::cpus::RawCpuList;
use super::model::{LogLevel, PoolQuery};
use super::units::{ByteSize, DurationValue, OptionalDuration};

/// A value with its place in the document, and whether the user's file set it.
#[derive(Debug, Clone)]
pub(super) struct Item<T> {
    pub(super) value: T,
    pub(super) line: u64,
    pub(super) column: u64,
    pub(super) from_user: bool,
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

pub(super) type Leaf<T> = Option<Item<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) port: Leaf<u16>,
    pub(super) hostfile: Leaf<PathBuf>,
    pub(super) segments: Option<RawSegments>,
    pub(super) workers: Option<RawWorkers>,
    pub(super) queue: Option<RawQueue>,
    pub(super) coroutine: Option<RawCoroutine>,
    pub(super) module_path: Leaf<Vec<Item<PathBuf>>>,
    pub(super) logging: Option<RawLogging>,
    pub(super) idle: Option<RawIdle>,
    pub(super) client_wait_timeout: Leaf<DurationValue>,
    pub(super) reaper: Option<RawReaper>,
    pub(super) supervisor: Option<RawSupervisor>,
    pub(super) tasks: Option<RawTasks>,
    /// `~` here means "no deadline", not "the default": a present key is `Some`.
    #[serde(default, deserialize_with = "present")]
    pub(super) task_deadline: Leaf<OptionalDuration>,
    pub(super) control: Option<RawControl>,
    pub(super) cluster: Option<RawCluster>,
    pub(super) compose: Leaf<Vec<RawPool>>,
}

/// A key whose presence matters even when its value is null.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Leaf<T>, D::Error> {
    Item::deserialize(deserializer).map(Some)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSegments {
    pub(super) main: Leaf<ByteSize>,
    pub(super) client_data: Leaf<ByteSize>,
    pub(super) runtime_data: Leaf<ByteSize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkers {
    pub(super) low_latency: Leaf<u32>,
    pub(super) high_latency: Leaf<u32>,
    pub(super) reinforcement: Leaf<u32>,
    pub(super) process_reaper: Leaf<u32>,
    pub(super) affinity: Option<RawAffinity>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAffinity {
    pub(super) low_latency: Leaf<RawCpuList>,
    pub(super) high_latency: Leaf<RawCpuList>,
    pub(super) reinforcement: Leaf<RawCpuList>,
    pub(super) process_reaper: Leaf<RawCpuList>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    pub(super) lanes: Leaf<u32>,
    pub(super) depth: Leaf<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCoroutine {
    pub(super) stack_size: Leaf<ByteSize>,
    pub(super) max_live: Leaf<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReaper {
    pub(super) interval: Leaf<DurationValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTasks {
    pub(super) max_depth: Leaf<u32>,
    pub(super) stop_drain: Leaf<DurationValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSupervisor {
    pub(super) stall_timeout: Leaf<DurationValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    pub(super) max_clients: Leaf<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    /// `~`: the control port + 1 (a present key is `Some`, as for
    /// `task_deadline`).
    #[serde(default, deserialize_with = "present")]
    pub(super) port: Leaf<Option<u16>>,
    /// `~`: the first hostfile entry the runtime can bind.
    #[serde(default, deserialize_with = "present")]
    pub(super) node: Leaf<Option<String>>,
    pub(super) heartbeat: Leaf<DurationValue>,
    pub(super) peer_timeout: Leaf<DurationValue>,
    pub(super) task_timeout: Leaf<DurationValue>,
    /// `~`: `~/.chimaera/cluster.key`.
    #[serde(default, deserialize_with = "present")]
    pub(super) key_file: Leaf<Option<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogging {
    pub(super) level: Leaf<LogLevel>,
    pub(super) file: Leaf<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdle {
    pub(super) busy_poll: Leaf<DurationValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub(super) module: Item<String>,
    pub(super) name: Item<String>,
    pub(super) query: Item<PoolQuery>,
    pub(super) id: Leaf<u64>,
    pub(super) args: Leaf<String>,
    pub(super) containers: Leaf<u32>,
}

/// Merging the user's document (`over`) over the defaults (`self`).
pub(super) trait Merge {
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
    sections { segments, workers, queue, coroutine, logging, idle, reaper, supervisor, tasks, control, cluster });
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
} sections { affinity });
impl_merge!(RawAffinity {
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
impl_merge!(RawTasks {
    max_depth,
    stop_drain
});
impl_merge!(RawControl { max_clients });
impl_merge!(RawCluster {
    port,
    node,
    heartbeat,
    peer_timeout,
    task_timeout,
    key_file
});
impl_merge!(RawLogging { level, file });
impl_merge!(RawIdle { busy_poll });
