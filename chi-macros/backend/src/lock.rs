//! `chimaera_methods.lock`: the ids of every supported method of every module
//! of a repository, as `cargo chimod refresh` last saw them.
//!
//! A method id is permanent: clients built against a module, and tasks saved or
//! sent between nodes, name methods by id. So once recorded here, a method
//! keeps its id (setting it to `-1`, unsupported, is allowed; giving it another
//! id is not), and its id is never given to another method, even after the
//! method is removed from the YAML file. The file is meant to be committed.
//!
//! ```toml
//! [chimaera_hello]   # the module's library name, {namespace}_{module_name}
//! kCreate = 0
//! kSayHello = 10
//! ```
//!
//! The file lives beside the repository's `chimaera_repo.yaml`
//! ([`lock_path`]). `cargo chimod refresh` writes it; [`crate::check`] holds
//! each module to it, for the macros and for refresh alike, so a renumbered
//! method is the same problem, with the same advice, in both. This module is
//! the file format only; the reader takes the subset of TOML that
//! [`Lock::render`] writes (tables of integer keys, comments), so the macros
//! need no TOML library.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diag::Problem;

/// The lock file's name, in the repository root.
pub const LOCK_FILE: &str = "chimaera_methods.lock";

const HEADER: &str = "\
# The method ids of this repository's modules, kept by `cargo chimod refresh`.
# Commit this file. A method id is permanent: refresh refuses a chimaera_mod.yaml
# that gives a method recorded here another id, or gives its id to another
# method (also after the method was removed).
";

/// The lock file of the repository whose `chimaera_repo.yaml` is `repo_yaml`.
pub fn lock_path(repo_yaml: &Path) -> Option<PathBuf> {
    Some(repo_yaml.parent()?.join(LOCK_FILE))
}

/// The recorded ids: library name → method key → id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    /// `{namespace}_{module_name}` → key → id.
    pub modules: BTreeMap<String, BTreeMap<String, i64>>,
}

impl Lock {
    /// Reads `path`; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<Lock, Problem> {
        match std::fs::read_to_string(path) {
            Ok(t) => Lock::parse(path, &t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lock::default()),
            Err(e) => Err(Problem::in_file(path, format!("cannot read: {e}"))),
        }
    }

    /// Parses the text of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Lock, Problem> {
        let bad = |line: usize, what: String| {
            Problem::at_line(
                path,
                line as u64 + 1,
                format!("{what}; restore the file from version control (it records method ids)"),
            )
        };
        let mut modules: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        let mut table: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let name = unquote(name.trim());
                if name.is_empty() || modules.contains_key(name) {
                    return Err(bad(n, format!("`{line}` is not a new module table")));
                }
                modules.insert(name.to_owned(), BTreeMap::new());
                table = Some(name.to_owned());
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(bad(
                    n,
                    format!("`{line}` is neither `[module]` nor `kKey = id`"),
                ));
            };
            let key = unquote(key.trim());
            let Some(lib) = &table else {
                return Err(bad(n, format!("`{key}` comes before any `[module]` table")));
            };
            let Ok(id) = value.trim().replace('_', "").parse::<i64>() else {
                return Err(bad(n, format!("`{lib}.{key}` is not an integer id")));
            };
            if let Some(ids) = modules.get_mut(lib) {
                ids.insert(key.to_owned(), id);
            }
        }
        Ok(Lock { modules })
    }

    /// The file's text (sorted, so it only changes when ids are added).
    pub fn render(&self) -> String {
        let mut out = HEADER.to_owned();
        for (lib, ids) in &self.modules {
            out.push_str(&format!("\n[{lib}]\n"));
            for (key, id) in ids {
                out.push_str(&format!("{key} = {id}\n"));
            }
        }
        out
    }

    /// Whether `key` of `lib` is recorded.
    pub fn has(&self, lib: &str, key: &str) -> bool {
        self.modules.get(lib).is_some_and(|m| m.contains_key(key))
    }

    /// The ids recorded for `lib`.
    pub fn ids(&self, lib: &str) -> Option<&BTreeMap<String, i64>> {
        self.modules.get(lib)
    }

    /// Records `key` of `lib` with `id` unless it is recorded; returns
    /// whether it was added.
    pub fn record(&mut self, lib: &str, key: &str, id: i64) -> bool {
        let ids = self.modules.entry(lib.to_owned()).or_default();
        if ids.contains_key(key) {
            return false;
        }
        ids.insert(key.to_owned(), id);
        true
    }
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_record() {
        let mut l = Lock::default();
        assert!(l.record("a_m", "kFoo", 10));
        assert!(l.record("a_m", "kCreate", 0));
        assert!(!l.record("a_m", "kFoo", 12));
        let text = l.render();
        assert!(
            text.ends_with("\n[a_m]\nkCreate = 0\nkFoo = 10\n"),
            "{text}"
        );
        assert_eq!(Lock::parse(Path::new("x"), &text).unwrap(), l);
    }

    #[test]
    fn hand_written_toml_of_the_same_shape_is_read() {
        let l = Lock::parse(
            Path::new("x"),
            "# c\n[\"a_m\"]  # the module\n\"kFoo\"=10 # id\nkBar = 1_1\n\n[b]\n",
        )
        .unwrap();
        assert_eq!(l.modules["a_m"]["kFoo"], 10);
        assert_eq!(l.modules["a_m"]["kBar"], 11);
        assert!(l.modules["b"].is_empty());
    }

    #[test]
    fn a_damaged_lock_says_what_to_do() {
        for text in [
            "[a]\nkFoo = \"x\"\n",
            "kFoo = 1\n",
            "[a]\nkFoo\n",
            "[a]\n[a]\n",
        ] {
            let e = Lock::parse(Path::new("l"), text).unwrap_err().to_string();
            assert!(e.contains("restore the file"), "{text:?}: {e}");
            assert!(e.starts_with("l:"), "{e}");
        }
    }
}
