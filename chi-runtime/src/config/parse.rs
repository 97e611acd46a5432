//! Parsing one document: YAML text to a [`RawConfig`], or an error that names
//! the line, column and key.
//!
//! The YAML parser's errors are rewritten for users: the dotted key is found
//! from the deserializer's path or, failing that, from the text around the
//! line, and a "wrong type" message says what the key takes.

use serde::Deserialize;
use serde_saphyr::{MessageFormatter, UserMessageFormatter};

use super::error::{ConfigError, Pos, Snippet, detail};
use super::raw::RawConfig;

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
        "workers" => {
            "a mapping with keys low_latency, high_latency, reinforcement, process_reaper, affinity"
        }
        "workers.affinity" => {
            "a mapping with keys low_latency, high_latency, reinforcement, process_reaper"
        }
        "workers.affinity.low_latency"
        | "workers.affinity.high_latency"
        | "workers.affinity.reinforcement"
        | "workers.affinity.process_reaper" => super::cpus::EXPECTED,
        "workers.affinity.low_latency[]"
        | "workers.affinity.high_latency[]"
        | "workers.affinity.reinforcement[]"
        | "workers.affinity.process_reaper[]" => "a CPU number or a range such as 2-3",
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
        "tasks" => "a mapping with keys max_depth, stop_drain",
        "tasks.max_depth" => "a whole number of subtask levels, at least 1",
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
        | "supervisor.stall_timeout"
        | "tasks.stop_drain" => {
            "a duration: a number with a unit ns, us, ms, s, m or h (e.g. 100us, 30s)"
        }
        "compose" => {
            "a list of pools, each a mapping with keys module, name, query and optionally id, \
             args, containers"
        }
        "compose[]" => {
            "a mapping with keys module, name, query and optionally id, args, containers"
        }
        "compose[].containers" => "a number of containers: a whole number from 1 to 65536",
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
pub(super) fn key_path_at(text: &str, line: u64) -> Option<String> {
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

pub(super) fn parse_raw(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
    let mut track = serde_path_to_error::Track::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |deserializer| {
        RawConfig::deserialize(serde_path_to_error::Deserializer::new(
            deserializer,
            &mut track,
        ))
    });
    result.map_err(|error| convert_error(&error, &track.path(), text, file))
}
