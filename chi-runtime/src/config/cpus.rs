//! CPU lists (`workers.affinity.*`): which CPUs a kind of thread may run on.
//!
//! Written as Linux writes them (`/sys/devices/system/cpu/online`,
//! `taskset -c`): CPU numbers and inclusive ranges separated by commas,
//! `"0-3,8"`; in YAML also a single number (`2`) or a list of numbers and
//! ranges (`[0, 2-3]`). `~` means no list: the thread may run wherever the
//! process may. Parsing checks the syntax and the bound of a CPU number
//! ([`MAX_CPU`]); whether the CPUs exist on this machine is checked at start
//! ([`Config::check_resources`](super::Config::check_resources)).

use std::fmt;

use rustix::thread::CpuSet;
use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

/// CPU numbers are below this (the size of the kernel's `cpu_set_t`).
pub const MAX_CPU: usize = 1024;

/// A non-empty set of CPU numbers, each below [`MAX_CPU`], sorted and without
/// repeats. Displays in the list syntax, ranges folded: `0-3,8`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CpuList(Vec<usize>);

/// Why a CPU list was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CPU list `{input}`: {reason}")]
pub struct CpuListError {
    input: String,
    reason: String,
}

impl CpuList {
    /// The list of `cpus` (sorted and deduplicated); `None` if it is empty or a
    /// number is not below [`MAX_CPU`].
    pub fn new(cpus: impl IntoIterator<Item = usize>) -> Option<CpuList> {
        let mut v: Vec<usize> = cpus.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        (!v.is_empty() && v.iter().all(|&c| c < MAX_CPU)).then_some(CpuList(v))
    }

    /// Parses the list syntax: `3`, `0-3`, `0,2,4-7` (spaces around the
    /// pieces are allowed).
    pub fn parse(text: &str) -> Result<CpuList, CpuListError> {
        let bad = |reason: String| CpuListError {
            input: text.to_owned(),
            reason,
        };
        let mut cpus = Vec::new();
        for piece in text.split(',') {
            let piece = piece.trim();
            if piece.is_empty() {
                return Err(bad(if text.trim().is_empty() {
                    "empty; expected CPU numbers and ranges such as 0-3,8, or ~ for no pinning"
                        .to_owned()
                } else {
                    "an empty piece between commas; expected CPU numbers and ranges such as 0-3,8"
                        .to_owned()
                }));
            }
            let (lo, hi) = match piece.split_once('-') {
                Some((lo, hi)) => (cpu_number(lo, text)?, cpu_number(hi, text)?),
                None => {
                    let n = cpu_number(piece, text)?;
                    (n, n)
                }
            };
            if lo > hi {
                return Err(bad(format!(
                    "the range `{piece}` runs backwards; expected low-high, e.g. {hi}-{lo}"
                )));
            }
            cpus.extend(lo..=hi);
        }
        Ok(CpuList::new(cpus).expect("non-empty and bounded by cpu_number"))
    }

    /// The CPU numbers, ascending.
    pub fn cpus(&self) -> &[usize] {
        &self.0
    }

    /// Whether `cpu` is in the list.
    pub fn contains(&self, cpu: usize) -> bool {
        self.0.binary_search(&cpu).is_ok()
    }

    /// The kernel's CPU set of the list, for `sched_setaffinity`.
    pub fn to_cpu_set(&self) -> CpuSet {
        let mut set = CpuSet::new();
        for &cpu in self.0.iter().filter(|&&c| c < CpuSet::MAX_CPU) {
            set.set(cpu);
        }
        set
    }

    /// The CPUs of a kernel CPU set; `None` if it is empty.
    pub fn of_cpu_set(set: &CpuSet) -> Option<CpuList> {
        CpuList::new((0..MAX_CPU.min(CpuSet::MAX_CPU)).filter(|&c| set.is_set(c)))
    }

    /// The CPUs the calling thread may run on now (`sched_getaffinity`: its
    /// own mask, within its cgroup's cpuset); `None` if the kernel does not say.
    pub fn of_current_thread() -> Option<CpuList> {
        CpuList::of_cpu_set(&rustix::thread::sched_getaffinity(None).ok()?)
    }

    /// The CPUs online on this machine (`/sys/devices/system/cpu/online`);
    /// `None` if unknown.
    pub fn online() -> Option<CpuList> {
        let text = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
        CpuList::parse(text.trim()).ok()
    }
}

/// One CPU number of the list `text`.
fn cpu_number(s: &str, text: &str) -> Result<usize, CpuListError> {
    let s = s.trim();
    let bad = |reason: String| CpuListError {
        input: text.to_owned(),
        reason,
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!(
            "`{s}` is not a CPU number; expected CPU numbers and ranges such as 0-3,8"
        )));
    }
    match s.parse::<usize>() {
        Ok(n) if n < MAX_CPU => Ok(n),
        _ => Err(bad(format!(
            "CPU {s} is out of range; CPU numbers are below {MAX_CPU}"
        ))),
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut first = true;
        while i < self.0.len() {
            let lo = self.0[i];
            let mut hi = lo;
            while i + 1 < self.0.len() && self.0[i + 1] == hi + 1 {
                i += 1;
                hi = self.0[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if hi == lo {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

/// What a `workers.affinity.*` key takes, for messages.
pub(super) const EXPECTED: &str = "a CPU number, a list of CPU numbers and ranges such as [0, 2-3] or \"0-3,8\", or ~ for no pinning";

/// A CPU list as written in YAML: a number, a string in the list syntax, or a
/// sequence of numbers and such strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawCpuList(pub CpuList);

#[derive(Clone, Copy)]
struct CpuListVisitor;

/// One element of a YAML sequence of CPUs: a number or a range string.
struct CpuPiece(Vec<usize>);

#[derive(Clone, Copy)]
struct CpuPieceVisitor;

fn wrong_kind<E: de::Error>(found: impl fmt::Display) -> E {
    E::custom(format_args!("invalid type: {found}, expected {EXPECTED}"))
}

fn from_number<E: de::Error>(v: u64) -> Result<usize, E> {
    usize::try_from(v)
        .ok()
        .filter(|&n| n < MAX_CPU)
        .ok_or_else(|| {
            E::custom(format_args!(
                "CPU {v} is out of range; CPU numbers are below {MAX_CPU}"
            ))
        })
}

fn from_negative<E: de::Error>(v: i64) -> Result<usize, E> {
    match u64::try_from(v) {
        Ok(v) => from_number(v),
        Err(_) => Err(E::custom(format_args!(
            "`{v}` is not a CPU number; expected {EXPECTED}"
        ))),
    }
}

/// Rejects what a CPU list never is.
macro_rules! reject_non_cpu_kinds {
    () => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Err(wrong_kind(format_args!("boolean `{v}`")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Err(wrong_kind(format_args!("floating point `{v}`")))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<Self::Value, A::Error> {
            Err(wrong_kind("a mapping"))
        }
    };
}

impl<'de> Visitor<'de> for CpuPieceVisitor {
    type Value = CpuPiece;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CPU number or a range such as 2-3")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<CpuPiece, E> {
        from_number(v).map(|n| CpuPiece(vec![n]))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<CpuPiece, E> {
        from_negative(v).map(|n| CpuPiece(vec![n]))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<CpuPiece, E> {
        CpuList::parse(v).map(|l| CpuPiece(l.0)).map_err(E::custom)
    }

    fn visit_unit<E: de::Error>(self) -> Result<CpuPiece, E> {
        Err(wrong_kind("null in a list of CPUs"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<CpuPiece, A::Error> {
        Err(wrong_kind("a list inside a list of CPUs"))
    }

    reject_non_cpu_kinds!();
}

impl<'de> Deserialize<'de> for CpuPiece {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CpuPieceVisitor)
    }
}

impl<'de> Visitor<'de> for CpuListVisitor {
    type Value = RawCpuList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawCpuList, E> {
        CpuPieceVisitor
            .visit_u64(v)
            .map(|p| RawCpuList(CpuList(p.0)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawCpuList, E> {
        CpuPieceVisitor
            .visit_i64(v)
            .map(|p| RawCpuList(CpuList(p.0)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCpuList, E> {
        CpuList::parse(v).map(RawCpuList).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawCpuList, A::Error> {
        let mut cpus = Vec::new();
        while let Some(piece) = seq.next_element::<CpuPiece>()? {
            cpus.extend(piece.0);
        }
        CpuList::new(cpus).map(RawCpuList).ok_or_else(|| {
            de::Error::custom(format_args!("an empty list of CPUs; expected {EXPECTED}"))
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawCpuList, E> {
        // `~` is "no list": the leaf is absent, never deserialized.
        Err(wrong_kind("null"))
    }

    reject_non_cpu_kinds!();
}

impl<'de> Deserialize<'de> for RawCpuList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CpuListVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_list_syntax() {
        let l = |s: &str| CpuList::parse(s).map(|l| l.cpus().to_vec());
        assert_eq!(l("3"), Ok(vec![3]));
        assert_eq!(l("0-3"), Ok(vec![0, 1, 2, 3]));
        assert_eq!(l("0,2,4-6"), Ok(vec![0, 2, 4, 5, 6]));
        assert_eq!(l(" 1 , 0 "), Ok(vec![0, 1]));
        assert_eq!(l("2-3,3,0-2"), Ok(vec![0, 1, 2, 3]));
        assert_eq!(l("1023"), Ok(vec![1023]));
    }

    #[test]
    fn rejects_bad_lists() {
        for (bad, why) in [
            ("", "empty"),
            ("1,,2", "empty piece"),
            ("1,", "empty piece"),
            ("a", "not a CPU number"),
            ("-1", "not a CPU number"),
            ("1-", "not a CPU number"),
            ("3-1", "runs backwards"),
            ("0-2-4", "not a CPU number"),
            ("1024", "out of range"),
            ("0-99999999999999999999", "out of range"),
            ("+1", "not a CPU number"),
        ] {
            let e = CpuList::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.contains(&format!("`{bad}`")), "{bad:?}: {e}");
        }
    }

    #[test]
    fn displays_folded_ranges() {
        let show = |v: &[usize]| CpuList::new(v.iter().copied()).unwrap().to_string();
        assert_eq!(show(&[0, 1, 2, 3]), "0-3");
        assert_eq!(show(&[5, 0, 2, 3, 4, 9]), "0,2-5,9");
        assert_eq!(show(&[7]), "7");
        assert_eq!(CpuList::new([]), None);
        assert_eq!(CpuList::new([MAX_CPU]), None);
        let l = CpuList::parse("0,2-5,9").unwrap();
        assert_eq!(CpuList::parse(&l.to_string()), Ok(l.clone()));
        assert!(l.contains(4) && !l.contains(1));
        assert_eq!(CpuList::of_cpu_set(&l.to_cpu_set()), Some(l));
    }

    #[test]
    fn this_machine_has_cpus() {
        let mine = CpuList::of_current_thread().expect("sched_getaffinity");
        let online = CpuList::online().expect("/sys/devices/system/cpu/online");
        assert!(
            mine.cpus().iter().all(|&c| online.contains(c)),
            "{mine} of {online}"
        );
    }
}
