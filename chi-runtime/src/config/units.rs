//! Sizes (`64k`, `1GiB`) and durations (`100us`, `2s`) as written in the config.
//!
//! Both accept a decimal number (with an optional fraction, `1.5g`) followed by an
//! optional run of spaces and a unit. Every size unit is a power of 1024, whatever its
//! spelling (`k`, `KB`, `KiB`). Durations must carry a unit (a bare `0` is allowed).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Why a size or duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{input}`: {reason}")]
pub struct UnitError {
    what: &'static str,
    input: String,
    reason: String,
}

impl UnitError {
    fn new(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        UnitError {
            what,
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

const SIZE_UNITS: &[(&[&str], u64)] = &[
    (&["", "b"], 1),
    (&["k", "kb", "kib"], 1 << 10),
    (&["m", "mb", "mib"], 1 << 20),
    (&["g", "gb", "gib"], 1 << 30),
    (&["t", "tb", "tib"], 1 << 40),
];

const DURATION_UNITS: &[(&[&str], u64)] = &[
    (&["ns"], 1),
    (&["us", "µs", "μs"], 1_000),
    (&["ms"], 1_000_000),
    (&["s", "sec"], 1_000_000_000),
    (&["m", "min"], 60_000_000_000),
    (&["h"], 3_600_000_000_000),
];

/// Splits `12.5 ms` into the number `12.5` and the unit `ms`.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    (&text[..end], text[end..].trim_start())
}

/// `number * multiplier`, exactly, for a decimal `number` (`12`, `1.5`, `.25`),
/// rounded down to an integer. `None` when it is not a number or overflows `u64`.
fn scale(number: &str, multiplier: u64) -> Option<u64> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 18 {
        return None;
    }
    let int_value: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let denom = 10u128.pow(frac.len() as u32);
    let whole = int_value.checked_mul(u128::from(multiplier))?;
    let part = frac_value * u128::from(multiplier) / denom;
    u64::try_from(whole.checked_add(part)?).ok()
}

fn lookup(units: &[(&[&str], u64)], unit: &str, lowercase: bool) -> Option<u64> {
    let unit = if lowercase {
        unit.to_ascii_lowercase()
    } else {
        unit.to_owned()
    };
    units
        .iter()
        .find(|(names, _)| names.contains(&unit.as_str()))
        .map(|&(_, multiplier)| multiplier)
}

/// Parses a size: `4096`, `64k`, `256m`, `1g`, `512MiB`, `1.5GB`. Units are
/// case-insensitive and all binary (`1k` = 1024 bytes).
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let trimmed = text.trim();
    let (number, unit) = split_number(trimmed);
    if number.is_empty() {
        return Err(UnitError::new(
            "size",
            text,
            "it does not start with a number",
        ));
    }
    let multiplier = lookup(SIZE_UNITS, unit, true).ok_or_else(|| {
        UnitError::new(
            "size",
            text,
            format!("unknown unit `{unit}` (use k, m, g or t)"),
        )
    })?;
    scale(number, multiplier)
        .ok_or_else(|| UnitError::new("size", text, "not a number, or too large"))
}

/// Parses a duration: `250ns`, `100us`, `5ms`, `2s`, `1.5s`, `1m` (a minute), `1h`.
/// A unit is required, except for `0`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let trimmed = text.trim();
    let (number, unit) = split_number(trimmed);
    if number.is_empty() {
        return Err(UnitError::new(
            "duration",
            text,
            "it does not start with a number",
        ));
    }
    if unit.is_empty() {
        return match scale(number, 1) {
            Some(0) => Ok(Duration::ZERO),
            _ => Err(UnitError::new(
                "duration",
                text,
                "it needs a unit: ns, us, ms, s, m or h (e.g. 100us)",
            )),
        };
    }
    let multiplier = lookup(DURATION_UNITS, unit, false).ok_or_else(|| {
        UnitError::new(
            "duration",
            text,
            format!("unknown unit `{unit}` (use ns, us, ms, s, m or h)"),
        )
    })?;
    scale(number, multiplier)
        .map(Duration::from_nanos)
        .ok_or_else(|| UnitError::new("duration", text, "not a number, or too large"))
}

/// Formats a byte count with the largest binary unit that divides it (`64k`, `1g`).
pub fn format_size(bytes: u64) -> String {
    for (names, multiplier) in SIZE_UNITS.iter().rev() {
        if *multiplier > 1 && bytes >= *multiplier && bytes.is_multiple_of(*multiplier) {
            return format!("{}{}", bytes / *multiplier, names[0]);
        }
    }
    bytes.to_string()
}

/// An error for a YAML node of the wrong kind, with a message that says what was
/// expected. (Serde's own `invalid_type` errors lose their location in serde-saphyr,
/// while custom ones get the node's line and column.)
fn wrong_kind<E: de::Error>(found: impl fmt::Display, expected: &dyn fmt::Display) -> E {
    E::custom(format_args!("invalid type: {found}, expected {expected}"))
}

/// Implements the visitor methods that reject every node kind but strings and integers.
macro_rules! reject_other_kinds {
    () => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Err(wrong_kind(format_args!("boolean `{v}`"), &Expecting(self)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Err(wrong_kind(
                format_args!("floating point `{v}`"),
                &Expecting(self),
            ))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(wrong_kind("null", &Expecting(self)))
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, _seq: A) -> Result<Self::Value, A::Error> {
            Err(wrong_kind("a sequence", &Expecting(self)))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<Self::Value, A::Error> {
            Err(wrong_kind("a mapping", &Expecting(self)))
        }
    };
}

/// Displays a visitor's `expecting` text.
struct Expecting<V>(V);

impl<'de, V: Visitor<'de> + Copy> fmt::Display for Expecting<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
}

/// A size in bytes, from an integer or a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSize(pub u64);

#[derive(Clone, Copy)]
struct ByteSizeVisitor;

impl<'de> Visitor<'de> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size in bytes, or with a unit k, m, g or t (e.g. 64k, 256m, 1g, 512MiB)")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        u64::try_from(v)
            .map(ByteSize)
            .map_err(|_| wrong_kind(format_args!("negative number `{v}`"), &Expecting(self)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        parse_size(v)
            .map(ByteSize)
            .map_err(|e| E::custom(format_args!("{e}; expected {}", Expecting(self))))
    }

    reject_other_kinds!();
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

/// A duration, from a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DurationValue(pub Duration);

#[derive(Clone, Copy)]
struct DurationVisitor;

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = DurationValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit ns, us, ms, s, m or h (e.g. 100us, 5ms, 30s)")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationValue, E> {
        if v == 0 {
            Ok(DurationValue(Duration::ZERO))
        } else {
            Err(E::custom(format_args!(
                "the duration `{v}` has no unit; expected {}",
                Expecting(self)
            )))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(wrong_kind(
                format_args!("negative number `{v}`"),
                &Expecting(self),
            )),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
        parse_duration(v)
            .map(DurationValue)
            .map_err(|e| E::custom(format_args!("{e}; expected {}", Expecting(self))))
    }

    reject_other_kinds!();
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// A duration, or none: `~` or `0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OptionalDuration(pub Option<Duration>);

#[derive(Clone, Copy)]
struct OptionalDurationVisitor;

impl<'de> Visitor<'de> for OptionalDurationVisitor {
    type Value = OptionalDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit ns, us, ms, s, m or h (e.g. 60s), or ~ or 0 for none")
    }

    fn visit_unit<E: de::Error>(self) -> Result<OptionalDuration, E> {
        Ok(OptionalDuration(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<OptionalDuration, E> {
        Ok(OptionalDuration(None))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<OptionalDuration, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<OptionalDuration, E> {
        DurationVisitor.visit_u64(v).map(OptionalDuration::of)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<OptionalDuration, E> {
        DurationVisitor.visit_i64(v).map(OptionalDuration::of)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<OptionalDuration, E> {
        DurationVisitor.visit_str(v).map(OptionalDuration::of)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<OptionalDuration, E> {
        Err(wrong_kind(format_args!("boolean `{v}`"), &Expecting(self)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<OptionalDuration, E> {
        Err(wrong_kind(
            format_args!("floating point `{v}`"),
            &Expecting(self),
        ))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _seq: A) -> Result<OptionalDuration, A::Error> {
        Err(wrong_kind("a sequence", &Expecting(self)))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<OptionalDuration, A::Error> {
        Err(wrong_kind("a mapping", &Expecting(self)))
    }
}

impl OptionalDuration {
    /// `0` is none.
    fn of(d: DurationValue) -> OptionalDuration {
        OptionalDuration((!d.0.is_zero()).then_some(d.0))
    }
}

impl<'de> Deserialize<'de> for OptionalDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OptionalDurationVisitor)
    }
}

/// A size for messages, rounded to three digits: `1.41 MiB`, `24 GiB`, `512 B`.
pub fn format_size_approx(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else if value >= 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approximate_sizes() {
        assert_eq!(format_size_approx(512), "512 B");
        assert_eq!(format_size_approx(24 << 30), "24 GiB");
        assert_eq!(format_size_approx(1_441_792), "1.38 MiB");
        assert_eq!(format_size_approx(3 << 29), "1.50 GiB");
        assert_eq!(format_size_approx(25_000_000_000), "23.3 GiB");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_size("2 TiB"), Ok(2 << 40));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size(".5k"), Ok(512));
        assert_eq!(parse_size("100b"), Ok(100));
        assert_eq!(parse_size(" 8k "), Ok(8192));
    }

    #[test]
    fn bad_sizes() {
        for bad in [
            "",
            "k",
            "12q",
            "1.2.3k",
            "-5k",
            "1e3",
            "99999999999t",
            "1 g b",
            ".",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        let err = parse_size("12q").unwrap_err().to_string();
        assert!(err.contains("unknown unit `q`"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ns"), Ok(Duration::from_nanos(250)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("50µs"), Ok(Duration::from_micros(50)));
        assert_eq!(parse_duration("5ms"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30 s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations() {
        for bad in ["", "s", "100", "5 parsecs", "1MS", "-1s", "1.s.s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        let err = parse_duration("100").unwrap_err().to_string();
        assert!(err.contains("needs a unit"), "{err}");
    }

    #[test]
    fn format_sizes() {
        assert_eq!(format_size(64 << 10), "64k");
        assert_eq!(format_size(1 << 30), "1g");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(format_size(0), "0");
    }
}
