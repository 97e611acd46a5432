//! The ids of the destroyed pools over the cluster, as ranges.
//!
//! # Design
//!
//! Every node remembers the ids of the pools over the cluster it saw
//! destroyed for as long as it runs, and sends the whole set to a node that
//! (re)joins (`life.rs`). Ids are given in increasing order, so the
//! destroyed ones form runs broken only by the pools still alive: kept as
//! disjoint inclusive ranges ([`IdRanges`]), the set takes one entry per
//! run, so its size (and the size of the notice that carries it) is bounded
//! by the number of live pools, not by how many were ever destroyed.
//!
//! On the wire (a [`CTL_DROP`](super::CTL_DROP) body) the set is a JSON
//! array whose elements are an id or a `[first, last]` range ([`Span`]): a
//! destruction sends `[id]`, a join the ranges. A range whose first id is
//! past its last is refused; a range is never walked id by id (a drop looks
//! for the pools it holds inside it), so any range is cheap.

use std::collections::BTreeMap;

use chi_sdk::admin::GLOBAL_POOL_BASE;
use serde::{Deserialize, Serialize};

use super::host::GLOBAL_POOL_END;

/// An element of a [`CTL_DROP`](super::CTL_DROP) body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Span {
    /// One id.
    One(u64),
    /// The ids from the first to the last, both included.
    Range(u64, u64),
}

impl Span {
    /// The first and last id, or why not (ids of pools over the cluster
    /// only: a peer's range past them would use up the ids for good).
    pub fn bounds(self) -> Result<(u64, u64), String> {
        let (lo, hi) = match self {
            Span::One(id) => (id, id),
            Span::Range(lo, hi) if lo <= hi => (lo, hi),
            Span::Range(lo, hi) => {
                return Err(format!("the range [{lo}, {hi}] ends before it starts"));
            }
        };
        if lo < GLOBAL_POOL_BASE || hi >= GLOBAL_POOL_END {
            return Err(format!(
                "the range [{lo}, {hi}] is not within the ids of pools over the cluster \
                 ({GLOBAL_POOL_BASE} to {GLOBAL_POOL_END})"
            ));
        }
        Ok((lo, hi))
    }
}

/// A set of ids kept as disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdRanges {
    /// First id of a range → its last.
    spans: BTreeMap<u64, u64>,
}

impl IdRanges {
    /// Adds the ids from `lo` to `hi` (both included; nothing if `lo > hi`),
    /// merging the ranges they touch or overlap.
    pub fn insert_range(&mut self, mut lo: u64, mut hi: u64) {
        if lo > hi {
            return;
        }
        if let Some((&s, &e)) = self.spans.range(..=lo).next_back()
            && e.saturating_add(1) >= lo
        {
            lo = s;
            hi = hi.max(e);
        }
        let touched: Vec<u64> = self
            .spans
            .range(lo..=hi.saturating_add(1))
            .map(|(&s, _)| s)
            .collect();
        for s in touched {
            if let Some(e) = self.spans.remove(&s) {
                hi = hi.max(e);
            }
        }
        self.spans.insert(lo, hi);
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: u64) -> bool {
        self.spans
            .range(..=id)
            .next_back()
            .is_some_and(|(_, &e)| id <= e)
    }

    /// The largest id in the set.
    pub fn last(&self) -> Option<u64> {
        self.spans.last_key_value().map(|(_, &e)| e)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The set as [`Span`]s, in order (the body of a drop notice).
    pub fn spans(&self) -> Vec<Span> {
        self.spans
            .iter()
            .map(|(&s, &e)| {
                if s == e {
                    Span::One(s)
                } else {
                    Span::Range(s, e)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_when_they_touch_or_overlap() {
        let mut r = IdRanges::default();
        for id in [5, 7, 6, 1, 3] {
            r.insert_range(id, id);
        }
        assert_eq!(r.spans(), [Span::One(1), Span::One(3), Span::Range(5, 7)]);
        r.insert_range(2, 2);
        assert_eq!(r.spans(), [Span::Range(1, 3), Span::Range(5, 7)]);
        r.insert_range(4, 4);
        assert_eq!(r.spans(), [Span::Range(1, 7)]);
        r.insert_range(0, 20);
        r.insert_range(30, 40);
        r.insert_range(35, 38);
        r.insert_range(9, 3); // empty
        assert_eq!(r.spans(), [Span::Range(0, 20), Span::Range(30, 40)]);
        r.insert_range(21, 29);
        assert_eq!(r.spans(), [Span::Range(0, 40)]);
        assert_eq!(r.last(), Some(40));
    }

    #[test]
    fn membership_and_the_ends_of_the_id_space() {
        let mut r = IdRanges::default();
        assert!(r.is_empty() && r.last().is_none() && !r.contains(0));
        r.insert_range(10, 20);
        assert!(!r.contains(9) && r.contains(10) && r.contains(20) && !r.contains(21));
        r.insert_range(u64::MAX, u64::MAX);
        r.insert_range(u64::MAX - 5, u64::MAX - 1);
        assert_eq!(
            r.spans(),
            [Span::Range(10, 20), Span::Range(u64::MAX - 5, u64::MAX)]
        );
        r.insert_range(0, 0);
        assert!(r.contains(0) && !r.contains(1));
        assert_eq!(r.last(), Some(u64::MAX));
    }

    #[test]
    fn a_run_of_destroyed_ids_between_live_pools_takes_one_entry() {
        // A hundred thousand pools, every 100th still alive.
        let mut r = IdRanges::default();
        for id in (0..100_000u64).filter(|i| i % 100 != 0) {
            r.insert_range(id, id);
        }
        assert_eq!(r.spans().len(), 1000);
        assert!(!r.contains(5000) && r.contains(5001) && r.contains(5099));
        let body = serde_json::to_vec(&r.spans()).unwrap();
        assert!(body.len() < 20_000, "{} bytes", body.len());
    }

    #[test]
    fn the_wire_form_takes_ids_and_ranges_and_refuses_backward_ones() {
        let spans: Vec<Span> = serde_json::from_str("[3,[5,9],[7,7]]").unwrap();
        assert_eq!(spans, [Span::One(3), Span::Range(5, 9), Span::Range(7, 7)]);
        let b = GLOBAL_POOL_BASE;
        assert_eq!(Span::Range(b + 5, b + 9).bounds(), Ok((b + 5, b + 9)));
        assert_eq!(Span::One(b).bounds(), Ok((b, b)));
        let e = Span::Range(b + 9, b + 5).bounds().unwrap_err();
        assert!(e.contains(&format!("[{}, {}]", b + 9, b + 5)), "{e}");
        // Outside the ids of pools over the cluster: a local id, or one
        // that would use the ids up.
        for s in [spans[1], Span::One(b - 1), Span::Range(b, GLOBAL_POOL_END)] {
            let e = s.bounds().unwrap_err();
            assert!(e.contains("not within the ids"), "{e}");
        }
        assert!(serde_json::from_str::<Vec<Span>>("[[1,2,3]]").is_err());
        assert!(serde_json::from_str::<Vec<Span>>("[-1]").is_err());
        assert_eq!(
            serde_json::to_string(&[Span::One(3), Span::Range(5, 9)]).unwrap(),
            "[3,[5,9]]"
        );
    }
}
