//! Configuration errors: each names the file, the line and column, the key and
//! what was expected.
//!
//! A [`ConfigError`] carries a [`Pos`] (file, line, column), a [`Snippet`] of
//! the offending line, and the dotted key (`workers.low_latency`). Where a key
//! was set is recorded while the configuration is built ([`KeyOrigins`]), so
//! errors found after parsing name it too.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use super::defaults::DEFAULT_SOURCE_NAME;

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
    pub(super) fn of(text: &str, line: u64, column: u64) -> Snippet {
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
    /// [`Config::check_resources`](super::Config::check_resources)): segments
    /// larger than the free space of `/dev/shm`, more threads or coroutine stacks
    /// than it can run. `key` is the key to change; the message names the others
    /// involved and what to do.
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
pub(super) struct Origin {
    pub(super) at: Pos,
    pub(super) snippet: Snippet,
    pub(super) from_user: bool,
}

/// Where the keys checked after parsing were set, by dotted key: errors found
/// later (at start) still name the file, line and key.
///
/// Not part of a configuration's value: two configurations with the same
/// settings are equal wherever their keys were written.
#[derive(Clone, Default)]
pub(super) struct KeyOrigins(pub(super) HashMap<String, Origin>);

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
    pub(super) fn of(&self, key: &str) -> Origin {
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
    pub(super) fn set_by_user(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|o| o.from_user)
    }

    /// Of `keys`, the one to name in an error about all of them: the one with the
    /// largest value among those the user set, else the first.
    pub(super) fn blame<'k>(&self, keys: &[(&'k str, u64)]) -> &'k str {
        keys.iter()
            .filter(|(k, _)| self.set_by_user(k))
            .max_by_key(|(_, v)| *v)
            .or(keys.first())
            .map_or("", |(k, _)| k)
    }

    /// `key` with its value and place, for messages naming several keys:
    /// ``segments.main = 1g (chi.yaml:3)``.
    pub(super) fn describe(&self, key: &str, value: impl fmt::Display) -> String {
        format!("`{key}` = {value} ({})", self.of(key).at)
    }

    /// An error of kind `kind` at `key`.
    pub(super) fn error(
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

pub(super) fn detail(
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
