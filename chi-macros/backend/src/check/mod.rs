//! Checking a module's `chimaera_mod.yaml` without compiling it: the rules that
//! `#[chimod]` and `#[task]` apply, as a list of problems, plus the names they
//! derive from each method key. `cargo chimod refresh` runs this on every
//! module of a repository; the names tell it which items to scaffold.
//!
//! The rules:
//! * `module_name` is present and a Rust identifier; `namespace` is a Rust
//!   identifier, agrees with the nearest `chimaera_repo.yaml` above the module's
//!   directory, and at least one of the two files gives it;
//! * every other top-level key is a method (`k` + an upper-case letter, then
//!   letters, digits, `_`) or known metadata ([`METADATA_KEYS`]): `custom: 10` or
//!   `Custom: 10` is a method key without its `k`;
//! * a method id is an integer; inherited methods ([`INHERITED`]) have their
//!   fixed id (`-1` allowed from `kNodeFailure` on); custom ids are `-1` or
//!   [`FIRST_CUSTOM`]`..=u32::MAX`; no two supported methods share an id;
//! * the handler a key maps to (`kFooBar` → `foo_bar`) is an identifier that is
//!   not a keyword, does not start with `monitor_` or `aggregate_` (those
//!   prefixes name monitor and aggregate functions), and no two keys map to
//!   the same handler.
//!
//! * a method recorded in the repository's `chimaera_methods.lock`
//!   ([`crate::lock`]) keeps its id, and no other method takes it (checked by
//!   [`check_module_file`], which finds the lock beside `chimaera_repo.yaml`).
//!   The lock wins: a method renumbered in the YAML keeps its recorded id in
//!   [`CheckedModule::methods`], so what is generated agrees with the clients
//!   already built while the problem is reported.
//!
//! This is the one place these rules are written: [`check_module_file`] is
//! what `cargo chimod refresh` runs on each module and what `#[chimod]` runs
//! on its own YAML (each [`Problem`] becoming a compile error), so a module
//! that builds passes `refresh`, and the other way round.

mod locked;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::diag::Problem;
use crate::lock::lock_path;
use crate::names::{handler_of, is_identifier, is_keyword, method_key_hint};
use crate::yaml::{MethodEntry, ModYaml, REPO_YAML, YamlError, find_repo_yaml};
pub use locked::{next_free, renumbered};

/// Inherited methods and their fixed ids.
pub const INHERITED: [(&str, i64); 6] = [
    ("kCreate", 0),
    ("kDestroy", 1),
    ("kNodeFailure", 2),
    ("kRecover", 3),
    ("kMigrate", 4),
    ("kUpgrade", 5),
];

/// First id of a custom method.
pub const FIRST_CUSTOM: i64 = 10;

/// Top-level keys of `chimaera_mod.yaml` that are not methods.
pub const METADATA_KEYS: [&str; 4] = ["module_name", "namespace", "version", "description"];

/// A method of a `chimaera_mod.yaml` whose id passed the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    /// The key (`kFooBar`).
    pub key: String,
    /// The id (`-1` = unsupported).
    pub id: i64,
    /// 1-based line of the entry.
    pub line: u64,
    /// The comment after the id in the YAML, if any.
    pub comment: Option<String>,
}

impl Method {
    /// The handler's name: `kFooBar` → `foo_bar`.
    pub fn handler(&self) -> String {
        handler_of(&self.key)
    }

    /// The name of its id constant: `FOO_BAR`.
    pub fn constant(&self) -> String {
        self.handler().to_ascii_uppercase()
    }

    /// The optional monitor's name: `monitor_foo_bar`.
    pub fn monitor(&self) -> String {
        format!("monitor_{}", self.handler())
    }

    /// The task struct `#[task]` maps to the key by default: `FooBarTask`.
    pub fn task_struct(&self) -> String {
        format!("{}Task", &self.key[1..])
    }

    /// Whether the module supports it (id ≥ 0).
    pub fn supported(&self) -> bool {
        self.id >= 0
    }

    /// Whether `#[chimod]` wants a handler for it: supported, and neither
    /// `kCreate` (the `create` function) nor `kDestroy` (the container's `Drop`).
    pub fn needs_handler(&self) -> bool {
        self.supported() && self.key != "kCreate" && self.key != "kDestroy"
    }
}

/// The outcome of [`check_module`].
#[derive(Debug, Clone)]
pub struct CheckedModule {
    /// The module's YAML file.
    pub path: PathBuf,
    /// The repository's YAML file that applies to it, if any.
    pub repo_path: Option<PathBuf>,
    /// `module_name`, if present.
    pub module_name: Option<String>,
    /// The namespace (the module's, else the repository's), if known.
    pub namespace: Option<String>,
    /// The methods whose ids passed the rules, in key order (with the id the
    /// lock records, where the YAML renumbered one).
    pub methods: Vec<Method>,
    /// Every method key of the YAML as written, those the rules rejected
    /// included (their problems are in `problems`).
    pub entries: BTreeMap<String, MethodEntry>,
    /// The repository's `chimaera_methods.lock`, if it exists.
    pub lock_path: Option<PathBuf>,
    /// The ids the lock records for this module (empty without a lock).
    pub locked: BTreeMap<String, i64>,
    /// What is wrong, one problem each, naming file, line and key.
    pub problems: Vec<Problem>,
}

impl CheckedModule {
    /// `{namespace}_{module_name}`: the runtime loads `lib{this}_runtime.so`.
    pub fn lib_name(&self) -> Option<String> {
        Some(format!(
            "{}_{}",
            self.namespace.as_ref()?,
            self.module_name.as_ref()?
        ))
    }

    /// Whether `key` is in the YAML but was rejected by a rule (reported
    /// already: its handler and task are not told again).
    pub fn rejected(&self, key: &str) -> bool {
        self.entries.contains_key(key) && !self.methods.iter().any(|m| m.key == key)
    }

    /// The method (supported or not) whose handler is `name`.
    pub fn method_of_handler(&self, name: &str) -> Option<&Method> {
        self.methods.iter().find(|m| m.handler() == name)
    }

    /// The key of `name` among the keys the YAML has but the rules rejected.
    pub fn rejected_key_of_handler(&self, name: &str) -> Option<&str> {
        self.entries
            .keys()
            .find(|k| handler_of(k) == name && self.rejected(k))
            .map(String::as_str)
    }
}

/// Reads `path` (a module's `chimaera_mod.yaml`) and the `chimaera_repo.yaml`
/// above it ([`find_repo_yaml`]) and checks them with [`check_module`]. A
/// repository file that cannot be read is one of the problems; the module's
/// own file not being readable is the error.
pub fn check_module_file(path: &Path) -> Result<CheckedModule, YamlError> {
    let yaml = ModYaml::load(path)?;
    let repo_path = find_repo_yaml(path);
    let mut repo_problem = None;
    let repo = match repo_path.as_deref().map(ModYaml::load) {
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            repo_problem = Some(Problem::from(e));
            None
        }
        None => None,
    };
    let mut checked = check_module(&yaml, repo.as_ref());
    checked.problems.extend(repo_problem);
    if let Some(lock) = repo_path.as_deref().and_then(lock_path) {
        locked::apply_lock(&mut checked, &lock);
    }
    checked.repo_path = repo_path;
    Ok(checked)
}

/// Checks `yaml` (a module's `chimaera_mod.yaml`) against the rules of the
/// module doc, `repo` being the `chimaera_repo.yaml` that applies to it (see
/// [`find_repo_yaml`]), parsed with [`ModYaml::load`] too.
pub fn check_module(yaml: &ModYaml, repo: Option<&ModYaml>) -> CheckedModule {
    let file = yaml.path.as_path();
    let at = |line: u64, message: String| Problem::at_line(file, line, message);
    let mut problems = Vec::new();

    let module_name = match yaml.texts.get("module_name") {
        Some(t) if is_identifier(&t.value) => Some(t.value.clone()),
        Some(t) => {
            problems.push(at(
                t.line,
                format!(
                    "`module_name: {}` is not a Rust identifier (letters, digits and `_`, not \
                     starting with a digit, not a keyword): the runtime library is named \
                     lib{{namespace}}_{{module_name}}_runtime.so",
                    t.value
                ),
            ));
            None
        }
        None => {
            problems.push(Problem::in_file(
                file,
                "no `module_name`: add e.g. `module_name: my_module`",
            ));
            None
        }
    };

    let mod_ns = yaml.texts.get("namespace");
    let repo_ns = repo.and_then(|r| r.texts.get("namespace").map(|t| (r, t)));
    let namespace = match (mod_ns, repo_ns) {
        (Some(m), Some((r, rt))) if m.value != rt.value => {
            problems.push(at(
                m.line,
                format!(
                    "`namespace: {}` disagrees with `namespace: {}` at {}:{}: a module takes its \
                     repository's namespace; make them equal",
                    m.value,
                    rt.value,
                    r.path.display(),
                    rt.line
                ),
            ));
            None
        }
        (Some(m), _) => Some(m.value.clone()),
        (None, Some((_, rt))) => Some(rt.value.clone()),
        (None, None) => {
            problems.push(Problem::in_file(
                file,
                format!(
                    "no namespace: neither this file nor a {REPO_YAML} above it has a \
                     `namespace`"
                ),
            ));
            None
        }
    };
    let namespace = match namespace {
        Some(ns) if !is_identifier(&ns) => {
            problems.push(Problem::in_file(
                file,
                format!(
                    "namespace `{ns}` is not a Rust identifier (letters, digits and `_`, not \
                     starting with a digit, not a keyword)"
                ),
            ));
            None
        }
        other => other,
    };

    for (key, t) in &yaml.texts {
        if METADATA_KEYS.contains(&key.as_str()) {
            continue;
        }
        let hint = method_key_hint(key)
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        problems.push(at(
            t.line,
            format!(
                "unknown key `{key}`{hint}: a method key is `k` followed by an upper-case letter \
                 (`kFooBar: 10`), and the other keys are {}",
                METADATA_KEYS.join(", ")
            ),
        ));
    }

    let mut methods: Vec<Method> = Vec::new();
    for (key, e) in &yaml.methods {
        let Some(id) = e.id else {
            problems.push(at(e.line, format!("`{key}` is not an integer method id")));
            continue;
        };
        let wrong = match INHERITED.iter().find(|(k, _)| k == key) {
            Some((_, fixed)) if !(id == *fixed || (id == -1 && *fixed > 1)) => {
                let allowed = if *fixed > 1 {
                    format!("{fixed} or -1 (unsupported)")
                } else {
                    fixed.to_string()
                };
                Some(format!("`{key}` is inherited and its id is {allowed}"))
            }
            Some(_) => None,
            None if id != -1 && id < FIRST_CUSTOM => Some(format!(
                "custom methods have ids from {FIRST_CUSTOM} (0..{} are inherited methods); use \
                 -1 for an unsupported method",
                FIRST_CUSTOM - 1
            )),
            None if id > i64::from(u32::MAX) => Some("a method id fits in a u32".to_owned()),
            None => None,
        };
        if let Some(why) = wrong {
            problems.push(at(e.line, format!("`{key}: {id}`: {why}")));
            continue;
        }
        methods.push(Method {
            key: key.clone(),
            id,
            line: e.line,
            comment: e.comment.clone(),
        });
    }

    let mut by_id: BTreeMap<i64, &Method> = BTreeMap::new();
    let mut by_handler: BTreeMap<String, &Method> = BTreeMap::new();
    for m in &methods {
        let handler = m.handler();
        if m.supported()
            && let Some(prev) = by_id.insert(m.id, m)
        {
            problems.push(Problem::in_file(
                file,
                format!(
                    "duplicate method id {}: `{}` (line {}) and `{}` (line {}); every method \
                     needs its own id",
                    m.id, prev.key, prev.line, m.key, m.line
                ),
            ));
        }
        if let Some(prev) = by_handler.insert(handler.clone(), m) {
            problems.push(Problem::in_file(
                file,
                format!(
                    "`{}` (line {}) and `{}` (line {}) both map to the handler `{handler}`: \
                     rename one",
                    prev.key, prev.line, m.key, m.line
                ),
            ));
        }
        if is_keyword(&handler) {
            problems.push(at(
                m.line,
                format!(
                    "`{}` maps to the handler `{handler}`, a Rust keyword: rename the key",
                    m.key
                ),
            ));
        } else if handler.starts_with("monitor_") {
            problems.push(at(
                m.line,
                format!(
                    "`{}` maps to the handler `{handler}`, but `monitor_…` names a monitor \
                     function: rename the key",
                    m.key
                ),
            ));
        } else if handler.starts_with("aggregate_") {
            problems.push(at(
                m.line,
                format!(
                    "`{}` maps to the handler `{handler}`, but `aggregate_…` names an \
                     aggregate function: rename the key",
                    m.key
                ),
            ));
        }
    }

    CheckedModule {
        path: yaml.path.clone(),
        repo_path: repo.map(|r| r.path.clone()),
        module_name,
        namespace,
        methods,
        entries: yaml.methods.clone(),
        lock_path: None,
        locked: BTreeMap::new(),
        problems,
    }
}

impl From<YamlError> for Problem {
    fn from(e: YamlError) -> Problem {
        match e {
            YamlError::Io { path, error } => {
                Problem::in_file(path, format!("cannot read: {error}"))
            }
            YamlError::Parse {
                path,
                line,
                column,
                message,
            } => {
                let column = column.map(|c| format!(" (column {c})")).unwrap_or_default();
                Problem {
                    file: path,
                    line,
                    message: format!("cannot parse{column}: {message}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(module: &str, repo: Option<&str>) -> CheckedModule {
        let y = ModYaml::parse(Path::new("m/chimaera_mod.yaml"), module).unwrap();
        let r = repo.map(|r| ModYaml::parse(Path::new("chimaera_repo.yaml"), r).unwrap());
        check_module(&y, r.as_ref())
    }

    fn text(c: &CheckedModule) -> String {
        let all: Vec<String> = c.problems.iter().map(ToString::to_string).collect();
        all.join("\n")
    }

    const GOOD: &str = "\
module_name: hello
version: 1.0.0
kCreate: 0
kDestroy: 1
kNodeFailure: -1
kSayHello: 10
kCoMutexTest: 11
kOff: -1
";

    #[test]
    fn a_good_module_has_no_problems_and_its_names() {
        let c = check(GOOD, Some("namespace: acme\nmodules: [hello]\n"));
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.lib_name().as_deref(), Some("acme_hello"));
        let m = c.methods.iter().find(|m| m.key == "kCoMutexTest").unwrap();
        assert_eq!(
            (m.handler(), m.monitor(), m.task_struct()),
            (
                "co_mutex_test".to_owned(),
                "monitor_co_mutex_test".to_owned(),
                "CoMutexTestTask".to_owned()
            )
        );
        let needs: Vec<&str> = c
            .methods
            .iter()
            .filter(|m| m.needs_handler())
            .map(|m| m.key.as_str())
            .collect();
        assert_eq!(needs, ["kCoMutexTest", "kSayHello"]);
    }

    #[test]
    fn every_rule_is_reported_at_once() {
        let c = check(
            "module_name: bad-name\nnamespace: acme\nkCreate: 1\nkA: 5\nkB: 10\nkC: 10\n\
             custom: 12\nkType: 13\nkMonitorX: 14\nkOdd: ten\nkAggregateY: 15\n",
            Some("namespace: other\n"),
        );
        let all = text(&c);
        for want in [
            "`module_name: bad-name` is not a Rust identifier",
            "disagrees with `namespace: other`",
            "`kCreate: 1`: `kCreate` is inherited and its id is 0",
            "`kA: 5`: custom methods have ids from 10",
            "duplicate method id 10: `kB` (line 5) and `kC` (line 6)",
            "unknown key `custom` (did you mean `kCustom`?)",
            "the handler `type`, a Rust keyword",
            "`monitor_…` names a monitor function",
            "`aggregate_…` names an aggregate function",
            "`kOdd` is not an integer method id",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn the_namespace_comes_from_either_file() {
        assert!(text(&check("module_name: m\n", None)).contains("no namespace"));
        let c = check("module_name: m\nnamespace: x\n", None);
        assert_eq!(c.lib_name().as_deref(), Some("x_m"));
        let c = check("module_name: m\n", Some("namespace: why\n"));
        assert_eq!(c.lib_name().as_deref(), Some("why_m"));
    }

    #[test]
    fn problems_name_file_and_line() {
        let c = check("module_name: m\nnamespace: a\nkA: 5\n", None);
        assert_eq!(
            text(&c),
            "m/chimaera_mod.yaml:3: `kA: 5`: custom methods have ids from 10 (0..9 are inherited \
             methods); use -1 for an unsupported method"
        );
    }

    #[test]
    fn a_module_file_is_checked_with_its_repository() {
        let base = std::env::temp_dir().join(format!("chi-check-{}", std::process::id()));
        let module = base.join("m");
        std::fs::create_dir_all(&module).unwrap();
        std::fs::write(base.join(REPO_YAML), "namespace: a\nmodules: [m]\n").unwrap();
        let path = module.join(crate::yaml::MOD_YAML);
        std::fs::write(&path, "module_name: m\nkCreate: 0\n").unwrap();
        let c = check_module_file(&path).unwrap();
        assert!(c.problems.is_empty(), "{}", text(&c));
        assert_eq!(c.lib_name().as_deref(), Some("a_m"));
        assert_eq!(c.repo_path, Some(base.join(REPO_YAML)));

        std::fs::write(base.join(REPO_YAML), "namespace: [a\n").unwrap();
        let c = check_module_file(&path).unwrap();
        assert!(text(&c).contains("cannot parse"), "{}", text(&c));
        std::fs::remove_dir_all(&base).unwrap();
        assert!(check_module_file(&path).is_err());
    }
}
