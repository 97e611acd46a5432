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

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use chi_macros_backend::check::Method;

/// The lock file's name, in the repository root.
pub const LOCK_FILE: &str = "chimaera_methods.lock";

const HEADER: &str = "\
# The method ids of this repository's modules, kept by `cargo chimod refresh`.
# Commit this file. A method id is permanent: refresh refuses a chimaera_mod.yaml
# that gives a method recorded here another id, or gives its id to another
# method (also after the method was removed).
";

/// The recorded ids: library name → method key → id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    /// `{namespace}_{module_name}` → key → id.
    pub modules: BTreeMap<String, BTreeMap<String, i64>>,
}

impl Lock {
    /// Reads `path`; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<Lock> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lock::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Lock::parse(path, &text)
    }

    /// Parses the text of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Lock> {
        let doc: toml_edit::DocumentMut = text.parse().with_context(|| {
            format!(
                "cannot parse {}; restore it from version control (it records method ids)",
                path.display()
            )
        })?;
        let mut modules = BTreeMap::new();
        for (lib, item) in doc.iter() {
            let Some(table) = item.as_table_like() else {
                bail!(
                    "{}: `{lib}` is not a table of method ids; restore the file from version \
                     control",
                    path.display()
                );
            };
            let mut ids = BTreeMap::new();
            for (key, v) in table.iter() {
                let Some(id) = v.as_integer() else {
                    bail!(
                        "{}: `{lib}.{key}` is not an integer id; restore the file from version \
                         control",
                        path.display()
                    );
                };
                ids.insert(key.to_owned(), id);
            }
            modules.insert(lib.to_owned(), ids);
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

    /// What `methods` (of `lib`, read from `yaml`) change in recorded ids, one
    /// message each naming the method and both ids.
    pub fn violations(&self, lib: &str, yaml: &Path, methods: &[Method]) -> Vec<String> {
        let Some(recorded) = self.modules.get(lib) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in methods.iter().filter(|m| m.supported()) {
            match recorded.get(&m.key) {
                Some(&old) if old != m.id => out.push(format!(
                    "{}:{}: `{}` of module {lib} was renumbered: {LOCK_FILE} records id {old}, the \
                     YAML file now says {}. Method ids are permanent (clients and saved tasks use \
                     them): put back `{}: {old}`, or add a new method with a new id",
                    yaml.display(),
                    m.line,
                    m.key,
                    m.id,
                    m.key
                )),
                Some(_) => {}
                None => {
                    if let Some((owner, _)) =
                        recorded.iter().find(|(k, id)| **id == m.id && **k != m.key)
                    {
                        out.push(format!(
                            "{}:{}: `{}: {}` of module {lib} takes the id of `{owner}` ({LOCK_FILE} \
                             records `{owner} = {}`). Ids are never reused, even after a method is \
                             removed: give `{}` an unused id (from {})",
                            yaml.display(),
                            m.line,
                            m.key,
                            m.id,
                            m.id,
                            m.key,
                            recorded.values().max().map_or(10, |max| (max + 1).max(10))
                        ));
                    }
                }
            }
        }
        out
    }

    /// Records the supported `methods` of `lib`; returns the keys added.
    pub fn record(&mut self, lib: &str, methods: &[Method]) -> Vec<String> {
        let ids = self.modules.entry(lib.to_owned()).or_default();
        let mut added = Vec::new();
        for m in methods.iter().filter(|m| m.supported()) {
            if !ids.contains_key(&m.key) {
                ids.insert(m.key.clone(), m.id);
                added.push(m.key.clone());
            }
        }
        added
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(key: &str, id: i64) -> Method {
        Method {
            key: key.into(),
            id,
            line: 7,
            comment: None,
        }
    }

    #[test]
    fn round_trip_and_record() {
        let mut l = Lock::default();
        let added = l.record("a_m", &[m("kCreate", 0), m("kFoo", 10), m("kOff", -1)]);
        assert_eq!(added, ["kCreate", "kFoo"]);
        assert!(l.record("a_m", &[m("kFoo", 10)]).is_empty());
        let text = l.render();
        assert!(
            text.ends_with("\n[a_m]\nkCreate = 0\nkFoo = 10\n"),
            "{text}"
        );
        assert_eq!(Lock::parse(Path::new("x"), &text).unwrap(), l);
    }

    #[test]
    fn renumbering_and_reuse_are_violations() {
        let mut l = Lock::default();
        l.record("a_m", &[m("kFoo", 10), m("kBar", 11)]);
        let y = Path::new("m/chimaera_mod.yaml");
        let v = l.violations("a_m", y, &[m("kFoo", 12), m("kBar", 11)]);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].contains("`kFoo` of module a_m was renumbered")
                && v[0].contains("records id 10")
                && v[0].contains("now says 12")
                && v[0].starts_with("m/chimaera_mod.yaml:7"),
            "{}",
            v[0]
        );
        let v = l.violations("a_m", y, &[m("kBaz", 10)]);
        assert!(
            v[0].contains("takes the id of `kFoo`") && v[0].contains("from 12"),
            "{v:?}"
        );
        // Unsupported, and removal, are fine; so are unknown modules.
        assert!(l.violations("a_m", y, &[m("kFoo", -1)]).is_empty());
        assert!(l.violations("other", y, &[m("kFoo", 99)]).is_empty());
    }

    #[test]
    fn a_damaged_lock_says_what_to_do() {
        let e = Lock::parse(Path::new("l"), "[a]\nkFoo = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("restore the file"), "{e}");
    }
}
