//! Checking values and building the [`Config`].
//!
//! The merged raw document is checked key by key against the bounds
//! ([`super::limits`]) and against what the runtime will make of the values
//! ([`super::footprint`]): the main segment must hold its allocator metadata,
//! the process queue and room for tasks; worker threads and clients share the
//! main segment's allocator owner slots. Each check's error names the key
//! where the offending value was set, in the user's file or the defaults.
//!
//! This file is long because the checks are many and each explains itself;
//! they share one [`Builder`] and read in the order of the configuration's
//! keys.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chi_sdk::shm::Segment;
use chi_sdk::shm::alloc::MAX_OWNERS;

use super::defaults::DEFAULT_SOURCE_NAME;
use super::error::{ConfigError, KeyOrigins, Origin, Pos, Snippet, detail};
use super::footprint::{self, MainSegmentNeeds, max_clients_for};
use super::hostfile::{self, load_hostfile};
use super::limits::*;
use super::model::*;
use super::raw::{Item, Leaf, RawAffinity, RawCluster, RawConfig, RawPool, RawWorkers};
use super::units::{ByteSize, DurationValue, format_size, format_size_approx};

pub(super) struct Source<'a> {
    pub(super) name: &'a str,
    pub(super) text: &'a str,
    /// Relative paths in this source are resolved against this directory.
    pub(super) base_dir: Option<&'a Path>,
}

pub(super) struct Builder<'a> {
    pub(super) defaults: Source<'a>,
    pub(super) user: Source<'a>,
    /// Where the keys checked were set; handed to the [`Config`].
    pub(super) origins: RefCell<KeyOrigins>,
}

mod cluster;
mod compose;
mod workers;

/// `" (why)"`, or nothing for an empty `why`.
fn parenthesised(why: &str) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!(" ({why})")
    }
}

/// The worker keys with their values.
pub(super) fn worker_keys(w: &WorkerCounts) -> [(&'static str, u64); 4] {
    [
        ("workers.low_latency", u64::from(w.low_latency)),
        ("workers.high_latency", u64::from(w.high_latency)),
        ("workers.reinforcement", u64::from(w.reinforcement)),
        ("workers.process_reaper", u64::from(w.process_reaper)),
    ]
}

/// `a 1 + b 2`.
pub(super) fn sum_of(keys: &[(&str, u64)]) -> String {
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

    pub(super) fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
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

        let mut raw_workers = raw.workers.unwrap_or_default();
        let affinity = self.affinity(raw_workers.affinity.take().unwrap_or_default());
        let workers = self.workers(raw_workers)?;

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
                    "{:?} is too long (an idle worker would spin that long, three times as long after remote work); expected at most {MAX_BUSY_POLL:?}",
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
        let raw_tasks = raw.tasks.unwrap_or_default();
        let tasks = TasksConfig {
            max_depth: self.count(
                raw_tasks.max_depth,
                "tasks.max_depth",
                (1, MAX_TASK_DEPTH),
                "",
            )?,
            stop_drain: self.duration(
                raw_tasks.stop_drain,
                "tasks.stop_drain",
                STOP_DRAIN_RANGE,
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

        let cluster = self.cluster(raw.cluster.unwrap_or_default(), port.value, &hosts)?;
        let compose = self.compose(self.need(raw.compose, "compose")?)?;

        Ok(Config {
            port: port.value,
            hostfile,
            hosts,
            segments,
            workers,
            affinity,
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
            tasks,
            task_deadline: task_deadline.value.0,
            control,
            cluster,
            compose,
            source: None,
            origins: self.origins.take(),
        })
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
}
