//! The results of one run: rows with their ratio to the floor and the issue's
//! targets, notes, plot series; printed as a table and written as JSON.
//!
//! # Ratios
//!
//! Every row says which floor it is compared with and prints
//! `cost / floor cost`, where the cost of a latency is itself and the cost of a
//! rate is the time per operation (`1 / rate`). So `4.9× ping-pong` means "takes
//! 4.9 times as long as one round trip of the raw shared-memory ping-pong", and
//! `12× ring` means "each operation costs 12 times the time per item of the raw
//! SPSC ring".

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::Opts;

/// The unit of a row's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Nanoseconds.
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Operations per second.
    PerSec,
    /// Percent of one core.
    Percent,
    /// A ratio of two measurements (`0.95×`).
    Times,
}

/// Which floor a row is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Base {
    /// One round trip of the shm ping-pong (median, each round trip timed).
    PingPong,
    /// One item through the SPSC ring.
    Ring,
    /// Spawning the runtime binary until it exits (`chi-runtime --help`).
    Spawn,
    /// A futex wake of a thread asleep as long as the runtime was idle, its
    /// answer awaited by spinning (the `idle` workload; set with
    /// [`Row::versus`]).
    WakeSpinning,
    /// The same, its answer awaited by spinning briefly, then sleeping.
    WakeSleeping,
    /// A raw ZeroMQ ROUTER/DEALER round trip with the message sizes of a
    /// remote task's frames (the `remote` workload; set with
    /// [`Row::versus`]).
    Zmq,
}

impl Base {
    fn label(self) -> &'static str {
        match self {
            Base::PingPong => "ping-pong",
            Base::Ring => "ring",
            Base::Spawn => "spawn",
            Base::WakeSpinning => "wake, spinning",
            Base::WakeSleeping => "wake, sleeping",
            Base::Zmq => "zmq",
        }
    }
}

/// A performance target of the issue, in the row's unit.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Target {
    /// `true`: the value must be at most `value`; `false`: at least.
    pub at_most: bool,
    /// The bound.
    pub value: f64,
}

impl Target {
    /// The value must be ≤ `v`.
    pub fn at_most(v: f64) -> Self {
        Target {
            at_most: true,
            value: v,
        }
    }
    /// The value must be ≥ `v`.
    pub fn at_least(v: f64) -> Self {
        Target {
            at_most: false,
            value: v,
        }
    }
    fn met(&self, v: f64) -> bool {
        if self.at_most {
            v <= self.value
        } else {
            v >= self.value
        }
    }
}

/// The floor measured in this run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Floor {
    /// Round trip of one atomic word between two processes, median, each round
    /// trip timed like the echo round trips (ns).
    pub ping_pong_ns: f64,
    /// The same, mean of batches of 100 round trips (no clock read inside; ns).
    pub ping_pong_batch_ns: f64,
    /// Items per second through a 1024-slot SPSC ring of `u64` between two processes.
    pub ring_per_sec: f64,
    /// Spawning `chi-runtime --help` until it exits, median (ms), when measured.
    pub spawn_ms: Option<f64>,
}

impl Floor {
    fn cost_ns(&self, base: Base) -> Option<f64> {
        match base {
            Base::PingPong => Some(self.ping_pong_ns),
            Base::Ring => Some(1e9 / self.ring_per_sec),
            Base::Spawn => self.spawn_ms.map(|ms| ms * 1e6),
            // Measured beside their rows: rows set their ratio themselves.
            Base::WakeSpinning | Base::WakeSleeping | Base::Zmq => None,
        }
        .filter(|c| c.is_finite() && *c > 0.0)
    }
}

/// One result.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Sub-command that produced it.
    pub workload: String,
    /// What was measured.
    pub name: String,
    /// The value, in `unit`.
    pub value: f64,
    /// Its unit.
    pub unit: Unit,
    /// The floor it is compared with.
    pub vs: Option<Base>,
    /// `cost / floor cost` (see the module documentation).
    pub ratio: Option<f64>,
    /// The target for it, if any.
    pub target: Option<Target>,
    /// Whether the target is met.
    pub met: Option<bool>,
}

impl Row {
    /// Sets the row's target.
    pub fn target(&mut self, t: Target) -> &mut Self {
        self.met = Some(t.met(self.value));
        self.target = Some(t);
        self
    }

    /// Compares the row with a floor measured beside it: `floor` in the row's
    /// unit, `base` says which.
    pub fn versus(&mut self, base: Base, floor: f64) -> &mut Self {
        let ratio = self.value / floor;
        if ratio.is_finite() && floor > 0.0 {
            self.ratio = Some(ratio);
            self.vs = Some(base);
        }
        self
    }
}

/// A line of a plot: `(x, y)` points.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// Legend.
    pub label: String,
    /// Points.
    pub points: Vec<(f64, f64)>,
}

/// A remark printed under the table (workloads not available, checks).
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    /// Sub-command.
    pub workload: String,
    /// Text.
    pub text: String,
}

/// Where and how the run was made.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    /// chi-bench's version.
    pub version: String,
    /// UTC start time, ISO 8601.
    pub date: String,
    /// Host name.
    pub host: String,
    /// Kernel release.
    pub kernel: String,
    /// CPU model.
    pub cpu: String,
    /// CPUs available to this process.
    pub cpus: usize,
    /// The command line.
    pub command: String,
    /// `--quick`.
    pub quick: bool,
    /// Base iteration count.
    pub iters: u64,
    /// Low-latency workers of the runtime under test.
    pub workers: u32,
    /// The CPUs they are pinned to (`--worker-cpus`), if any.
    pub worker_cpus: Option<String>,
    /// The CPUs the `idle` workload's client thread is pinned to
    /// (`--client-cpus`), if any.
    pub client_cpus: Option<String>,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The run.
    pub meta: Meta,
    /// The floor.
    pub floor: Floor,
    /// The results, in the order measured.
    pub rows: Vec<Row>,
    /// Remarks.
    pub notes: Vec<Note>,
    /// Round-trip latency CDFs: `(ns, fraction ≤)`.
    pub latency_cdf: Vec<Series>,
    /// Rates against the number of clients: `(clients, ops/s)`.
    pub rate_vs_clients: Vec<Series>,
    /// Remote round-trip latency CDFs (the `remote` workload, beside its
    /// ZeroMQ floor): `(ns, fraction ≤)`.
    pub remote_latency_cdf: Vec<Series>,
    /// Remote tasks per second against client threads: `(clients, ops/s)`.
    pub remote_rate_vs_clients: Vec<Series>,
    /// Per-workload details (percentiles of every sweep point, raw repeats).
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    /// An empty report of a run with `opts`.
    pub fn new(opts: &Opts) -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_owned())
            .unwrap_or_default();
        Report {
            meta: Meta {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                date: utc_now(),
                host: read("/proc/sys/kernel/hostname"),
                kernel: read("/proc/sys/kernel/osrelease"),
                cpu,
                cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
                command: std::env::args().collect::<Vec<_>>().join(" "),
                quick: opts.quick,
                iters: opts.iters(),
                workers: opts.workers,
                worker_cpus: opts.worker_cpus.as_ref().map(|c| c.text.clone()),
                client_cpus: opts.client_cpus.as_ref().map(|c| c.text.clone()),
            },
            floor: Floor::default(),
            rows: Vec::new(),
            notes: Vec::new(),
            latency_cdf: Vec::new(),
            rate_vs_clients: Vec::new(),
            remote_latency_cdf: Vec::new(),
            remote_rate_vs_clients: Vec::new(),
            details: serde_json::Map::new(),
        }
    }

    /// Records a result compared with floor `vs`.
    pub fn add(
        &mut self,
        workload: &str,
        name: impl Into<String>,
        value: f64,
        unit: Unit,
        vs: Option<Base>,
    ) -> &mut Row {
        let cost = match unit {
            Unit::Ns => Some(value),
            Unit::Us => Some(value * 1e3),
            Unit::Ms => Some(value * 1e6),
            Unit::PerSec => Some(1e9 / value),
            Unit::Percent | Unit::Times => None,
        };
        let ratio = vs
            .and_then(|b| self.floor.cost_ns(b))
            .zip(cost)
            .map(|(f, c)| c / f)
            .filter(|r| r.is_finite());
        self.rows.push(Row {
            workload: workload.to_owned(),
            name: name.into(),
            value,
            unit,
            vs: vs.filter(|_| ratio.is_some()),
            ratio,
            target: None,
            met: None,
        });
        self.rows.last_mut().expect("pushed above")
    }

    /// Records a remark (printed under the table).
    pub fn note(&mut self, workload: &str, text: impl Into<String>) {
        self.notes.push(Note {
            workload: workload.to_owned(),
            text: text.into(),
        });
    }

    /// Records details of a workload for the JSON file.
    pub fn detail(&mut self, key: &str, value: impl Serialize) {
        if let Ok(v) = serde_json::to_value(value) {
            self.details.insert(key.to_owned(), v);
        }
    }

    /// Prints the table.
    pub fn print(&self) {
        let m = &self.meta;
        println!();
        println!(
            "chi-bench {} · {} · {} ({} CPUs, {}) · {} iterations{}",
            m.version,
            m.date,
            m.host,
            m.cpus,
            m.cpu,
            m.iters,
            if m.quick { " (--quick)" } else { "" }
        );
        println!(
            "client and runtime are separate processes; runtime with {} low-latency worker(s){}",
            m.workers,
            m.worker_cpus
                .as_ref()
                .map(|c| format!(" pinned to CPUs {c}"))
                .unwrap_or_default()
        );
        if let Some(c) = &m.client_cpus {
            println!("the idle workload's client thread pinned to CPUs {c}");
        }
        let w = self
            .rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(20)
            .max(20);
        println!(
            "{:<w$}  {:>12}  {:>18}  {:>14}",
            "measurement", "value", "vs floor", "target"
        );
        let mut last = "";
        for r in &self.rows {
            if r.workload != last {
                println!("[{}]", r.workload);
                last = &r.workload;
            }
            let ratio = match (r.ratio, r.vs) {
                (Some(x), Some(b)) => format!("{}× {}", fmt_ratio(x), b.label()),
                _ => String::new(),
            };
            let target = r
                .target
                .map(|t| {
                    format!(
                        "{} {} {}",
                        if t.at_most { "≤" } else { "≥" },
                        fmt_value(t.value, r.unit),
                        if r.met == Some(true) { "ok" } else { "MISSED" }
                    )
                })
                .unwrap_or_default();
            println!(
                "{:<w$}  {:>12}  {:>18}  {:>14}",
                r.name,
                fmt_value(r.value, r.unit),
                ratio,
                target
            );
        }
        if !self.notes.is_empty() {
            println!("notes:");
            for n in &self.notes {
                println!("  {}: {}", n.workload, n.text);
            }
        }
    }

    /// Writes everything as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = std::io::BufWriter::new(f);
        serde_json::to_writer_pretty(&mut w, self)?;
        w.write_all(b"\n")?;
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// `value` in `unit`, human-readable.
pub fn fmt_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Ns if v >= 10_000.0 => format!("{:.1} µs", v / 1e3),
        Unit::Ns => format!("{v:.0} ns"),
        Unit::Us => format!("{v:.1} µs"),
        Unit::Ms => format!("{v:.2} ms"),
        Unit::PerSec if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        Unit::PerSec => format!("{:.1} k/s", v / 1e3),
        Unit::Percent => format!("{v:.2} %"),
        Unit::Times => format!("{v:.2}×"),
    }
}

fn fmt_ratio(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar), by
    // 400-year eras starting on March 1st.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_value(341.2, Unit::Ns), "341 ns");
        assert_eq!(fmt_value(6.67e6, Unit::PerSec), "6.67 M/s");
        assert_eq!(fmt_value(829e3, Unit::PerSec), "829.0 k/s");
        assert_eq!(fmt_ratio(4.873), "4.87");
        assert_eq!(fmt_value(1.2, Unit::Times), "1.20×");
    }

    #[test]
    fn date_is_iso() {
        let d = utc_now();
        assert_eq!(d.len(), 20, "{d}");
        assert!(d.starts_with("20"), "{d}");
    }
}
