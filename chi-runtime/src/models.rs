//! Performance models: the cost of a task of each method, and of a task of
//! each lane, learned from measured task steps.
//!
//! # The model
//!
//! Workers measure one task in sixteen (the run time of its first step, and
//! Monitor(EstLoad)'s estimate when the module gives one: see
//! `worker/samples.rs`); the reinforcement thread ([`crate::reinforcement`])
//! hands the measurements to `Models::learn`, which keeps:
//!
//! * per (pool, method), the **cost** of a task: an exponentially weighted
//!   moving average of the measured run times ([`METHOD_ALPHA`]), and the
//!   average of the module's own estimates beside it;
//! * per lane, the **cost per task**: a moving average ([`LANE_ALPHA`]) of the
//!   predicted cost of the tasks that came through it, where a task's
//!   predicted cost is the module's estimate if it gave one and its method's
//!   learned cost otherwise. A lane nothing was measured on costs
//!   [`DEFAULT_TASK_NS`] a task.
//!
//! The work queued on a lane is then its length times its cost per task:
//! what the reinforcement thread compares across workers.

use std::collections::HashMap;
use std::sync::Mutex;

/// Lane of a sample of a task that did not come from a lane (a subtask).
pub(crate) const NO_LANE: u32 = u32::MAX;

/// Weight of a new measurement in its method's cost.
pub const METHOD_ALPHA: f64 = 0.2;
/// Weight of a new task in its lane's cost per task.
pub const LANE_ALPHA: f64 = 0.3;
/// Cost per task of a lane nothing was measured on, in ns.
pub const DEFAULT_TASK_NS: f64 = 1_000.0;

/// One measured task step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Its pool.
    pub(crate) pool: u64,
    /// Its method.
    pub(crate) method: u32,
    /// The lane it came from ([`NO_LANE`] for a subtask).
    pub(crate) lane: u32,
    /// Run time of its first step, in ns.
    pub(crate) ns: u64,
    /// Monitor(EstLoad)'s estimate, in ns (0: none).
    pub(crate) est_ns: u64,
}

/// What is learned of one method of one pool.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MethodModel {
    /// Learned cost of a task, in ns.
    pub cost_ns: f64,
    /// Average of Monitor(EstLoad)'s estimates, in ns (0: the module gives
    /// none).
    pub est_ns: f64,
    /// Measurements learned from.
    pub samples: u64,
}

/// The models of a node.
#[derive(Debug, Default)]
pub struct Models {
    inner: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    methods: HashMap<(u64, u32), MethodModel>,
    /// Cost per task of each lane (0: nothing measured yet).
    lanes: Vec<f64>,
}

/// `avg` moved towards `x` by `alpha`; `x` itself for the first value.
fn ewma(avg: f64, x: f64, alpha: f64, first: bool) -> f64 {
    if first { x } else { avg + alpha * (x - avg) }
}

impl Models {
    /// Learns from `samples`.
    pub(crate) fn learn(&self, samples: &[Sample]) {
        if samples.is_empty() {
            return;
        }
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for s in samples {
            let m = t.methods.entry((s.pool, s.method)).or_default();
            let first = m.samples == 0;
            m.cost_ns = ewma(m.cost_ns, s.ns as f64, METHOD_ALPHA, first);
            if s.est_ns > 0 {
                m.est_ns = ewma(m.est_ns, s.est_ns as f64, METHOD_ALPHA, m.est_ns == 0.0);
            }
            m.samples += 1;
            let predicted = if s.est_ns > 0 {
                s.est_ns as f64
            } else {
                m.cost_ns
            };
            if s.lane != NO_LANE {
                let lane = s.lane as usize;
                if lane >= 1 << 16 {
                    continue;
                }
                if t.lanes.len() <= lane {
                    t.lanes.resize(lane + 1, 0.0);
                }
                let cur = t.lanes[lane];
                t.lanes[lane] = ewma(cur, predicted, LANE_ALPHA, cur == 0.0);
            }
        }
    }

    /// The model of `method` of pool `pool`, if it was measured.
    pub fn method(&self, pool: u64, method: u32) -> Option<MethodModel> {
        let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.methods.get(&(pool, method)).copied()
    }

    /// Every method's model, most measured first.
    pub fn methods(&self) -> Vec<((u64, u32), MethodModel)> {
        let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = t.methods.iter().map(|(k, m)| (*k, *m)).collect();
        v.sort_by(|a, b| b.1.samples.cmp(&a.1.samples).then(a.0.cmp(&b.0)));
        v
    }

    /// Cost per task of each of the first `n` lanes, in ns.
    pub fn lane_costs(&self, n: usize) -> Vec<f64> {
        let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (0..n)
            .map(|l| match t.lanes.get(l) {
                Some(&c) if c > 0.0 => c,
                _ => DEFAULT_TASK_NS,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(method: u32, lane: u32, ns: u64, est_ns: u64) -> Sample {
        Sample {
            pool: 7,
            method,
            lane,
            ns,
            est_ns,
        }
    }

    #[test]
    fn a_method_cost_follows_its_measurements() {
        let m = Models::default();
        m.learn(&[sample(10, 0, 1_000, 0)]);
        assert_eq!(m.method(7, 10).unwrap().cost_ns, 1_000.0);
        m.learn(&vec![sample(10, 0, 11_000, 0); 60]);
        let c = m.method(7, 10).unwrap();
        assert!((c.cost_ns - 11_000.0).abs() < 1.0, "{c:?}");
        assert_eq!(c.samples, 61);
        assert_eq!(c.est_ns, 0.0);
        assert!(m.method(7, 11).is_none());
        assert!(m.method(8, 10).is_none());
    }

    #[test]
    fn a_lane_costs_what_its_tasks_are_predicted_to_cost() {
        let m = Models::default();
        // Nothing measured: the default.
        assert_eq!(m.lane_costs(3), vec![DEFAULT_TASK_NS; 3]);
        // Lane 1 carries a slow method, lane 2 a method the module estimates.
        m.learn(&vec![sample(15, 1, 20_000_000, 0); 20]);
        m.learn(&vec![sample(14, 2, 900, 5_000); 20]);
        let c = m.lane_costs(3);
        assert_eq!(c[0], DEFAULT_TASK_NS);
        assert!((c[1] - 20e6).abs() < 1.0, "{c:?}");
        // The module's estimate predicts the lane's cost, not the measurement.
        assert!((c[2] - 5_000.0).abs() < 1.0, "{c:?}");
        assert!((m.method(7, 14).unwrap().est_ns - 5_000.0).abs() < 1.0);
        // A subtask teaches its method, not a lane.
        m.learn(&[sample(16, NO_LANE, 3_000, 0)]);
        assert_eq!(m.method(7, 16).unwrap().cost_ns, 3_000.0);
        assert_eq!(m.lane_costs(3).len(), 3);
        // Most measured first.
        assert_eq!(m.methods()[0].1.samples, 20);
        assert_eq!(m.methods().len(), 3);
    }

    #[test]
    fn a_garbage_lane_number_is_ignored() {
        let m = Models::default();
        m.learn(&[sample(10, 0xdead_beef, 1_000, 0)]);
        assert_eq!(m.lane_costs(2), vec![DEFAULT_TASK_NS; 2]);
        assert_eq!(m.method(7, 10).unwrap().samples, 1);
    }
}
