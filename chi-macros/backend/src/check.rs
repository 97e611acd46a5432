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
//!   not a keyword, does not start with `monitor_` (that prefix names monitor
//!   functions), and no two keys map to the same handler.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::chimod::{FIRST_CUSTOM, INHERITED, camel_case, snake_case};
use crate::yaml::ModYaml;

/// A module's method file, beside its `Cargo.toml`.
pub const MOD_YAML: &str = "chimaera_mod.yaml";

/// A repository's file, in its root directory.
pub const REPO_YAML: &str = "chimaera_repo.yaml";

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
}

impl Method {
    /// The handler's name: `kFooBar` → `foo_bar`.
    pub fn handler(&self) -> String {
        snake_case(&self.key[1..])
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
    /// `module_name`, if present.
    pub module_name: Option<String>,
    /// The namespace (the module's, else the repository's), if known.
    pub namespace: Option<String>,
    /// The methods whose ids passed the rules, in key order.
    pub methods: Vec<Method>,
    /// What is wrong, one message each, naming file, line and key.
    pub problems: Vec<String>,
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
}

/// The nearest `chimaera_repo.yaml` in the directories above `mod_yaml`'s own
/// (a repository holds its modules in subdirectories): the file `#[chimod]`
/// takes the namespace from.
pub fn find_repo_yaml(mod_yaml: &Path) -> Option<PathBuf> {
    let dir = mod_yaml.parent()?;
    dir.ancestors()
        .skip(1)
        .map(|d| d.join(REPO_YAML))
        .find(|p| p.is_file())
}

/// Whether `s` is a Rust identifier that is not a keyword.
pub fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    let first_ok = c
        .next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_');
    first_ok && c.all(|c| c.is_ascii_alphanumeric() || c == '_') && s != "_" && !is_keyword(s)
}

/// Whether `s` is a keyword of Rust 2024 (strict or reserved).
pub fn is_keyword(s: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum",
        "extern", "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod",
        "move", "mut", "pub", "ref", "return", "self", "Self", "static", "struct", "super",
        "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become", "box",
        "do", "final", "macro", "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
    ];
    KEYWORDS.contains(&s)
}

/// Checks `yaml` (a module's `chimaera_mod.yaml`) against the rules of the
/// module doc, `repo` being the `chimaera_repo.yaml` that applies to it (see
/// [`find_repo_yaml`]), parsed with [`ModYaml::load`] too.
pub fn check_module(yaml: &ModYaml, repo: Option<&ModYaml>) -> CheckedModule {
    let shown = yaml.path.display().to_string();
    let mut problems = Vec::new();

    let module_name = match yaml.texts.get("module_name") {
        Some(t) if is_identifier(&t.value) => Some(t.value.clone()),
        Some(t) => {
            problems.push(format!(
                "{shown}:{}: `module_name: {}` is not a Rust identifier (letters, digits and `_`, \
                 not starting with a digit, not a keyword): the runtime library is named \
                 lib{{namespace}}_{{module_name}}_runtime.so",
                t.line, t.value
            ));
            None
        }
        None => {
            problems.push(format!(
                "{shown}: no `module_name`: add e.g. `module_name: my_module`"
            ));
            None
        }
    };

    let mod_ns = yaml.texts.get("namespace");
    let repo_ns = repo.and_then(|r| r.texts.get("namespace").map(|t| (r, t)));
    let namespace = match (mod_ns, repo_ns) {
        (Some(m), Some((r, rt))) if m.value != rt.value => {
            problems.push(format!(
                "{shown}:{}: `namespace: {}` disagrees with `namespace: {}` at {}:{}: a module \
                 takes its repository's namespace; make them equal",
                m.line,
                m.value,
                rt.value,
                r.path.display(),
                rt.line
            ));
            None
        }
        (Some(m), _) => Some(m.value.clone()),
        (None, Some((_, rt))) => Some(rt.value.clone()),
        (None, None) => {
            problems.push(format!(
                "{shown}: no namespace: neither this file nor a {REPO_YAML} above it has a \
                 `namespace`"
            ));
            None
        }
    };
    let namespace = match namespace {
        Some(ns) if !is_identifier(&ns) => {
            problems.push(format!(
                "{shown}: namespace `{ns}` is not a Rust identifier (letters, digits and `_`, not \
                 starting with a digit, not a keyword)"
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
        problems.push(format!(
            "{shown}:{}: unknown key `{key}`{hint}: a method key is `k` followed by an upper-case \
             letter (`kFooBar: 10`), and the other keys are {}",
            t.line,
            METADATA_KEYS.join(", ")
        ));
    }

    let mut methods: Vec<Method> = Vec::new();
    for (key, e) in &yaml.methods {
        let at = format!("{shown}:{}", e.line);
        let Some(id) = e.id else {
            problems.push(format!("{at}: `{key}` is not an integer method id"));
            continue;
        };
        match INHERITED.iter().find(|(k, _)| k == key) {
            Some((_, fixed)) if !(id == *fixed || (id == -1 && *fixed > 1)) => {
                let allowed = if *fixed > 1 {
                    format!("{fixed} or -1 (unsupported)")
                } else {
                    fixed.to_string()
                };
                problems.push(format!(
                    "{at}: `{key}: {id}`: `{key}` is inherited and its id is {allowed}"
                ));
                continue;
            }
            Some(_) => {}
            None if id != -1 && id < FIRST_CUSTOM => {
                problems.push(format!(
                    "{at}: `{key}: {id}`: custom methods have ids from {FIRST_CUSTOM} (0..{} are \
                     inherited methods); use -1 for an unsupported method",
                    FIRST_CUSTOM - 1
                ));
                continue;
            }
            None if id > i64::from(u32::MAX) => {
                problems.push(format!("{at}: `{key}: {id}`: a method id fits in a u32"));
                continue;
            }
            None => {}
        }
        methods.push(Method {
            key: key.clone(),
            id,
            line: e.line,
        });
    }

    let mut by_id: BTreeMap<i64, &Method> = BTreeMap::new();
    let mut by_handler: BTreeMap<String, &Method> = BTreeMap::new();
    for m in &methods {
        let handler = m.handler();
        if m.supported()
            && let Some(prev) = by_id.insert(m.id, m)
        {
            problems.push(format!(
                "{shown}: duplicate method id {}: `{}` (line {}) and `{}` (line {}); every method \
                 needs its own id",
                m.id, prev.key, prev.line, m.key, m.line
            ));
        }
        if let Some(prev) = by_handler.insert(handler.clone(), m) {
            problems.push(format!(
                "{shown}: `{}` (line {}) and `{}` (line {}) both map to the handler `{handler}`: \
                 rename one",
                prev.key, prev.line, m.key, m.line
            ));
        }
        if is_keyword(&handler) {
            problems.push(format!(
                "{shown}:{}: `{}` maps to the handler `{handler}`, a Rust keyword: rename the key",
                m.line, m.key
            ));
        } else if handler.starts_with("monitor_") {
            problems.push(format!(
                "{shown}:{}: `{}` maps to the handler `{handler}`, but `monitor_…` names a \
                 monitor function: rename the key",
                m.line, m.key
            ));
        }
    }

    CheckedModule {
        path: yaml.path.clone(),
        module_name,
        namespace,
        methods,
        problems,
    }
}

/// The method key `key` was probably meant to be: `kbar` → `kBar`, `KBar` →
/// `kBar`, `foo_bar` → `kFooBar`; `None` if it has other characters.
fn method_key_hint(key: &str) -> Option<String> {
    if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || !key.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return None;
    }
    let rest = match key.strip_prefix(['k', 'K']) {
        Some(r) if r.starts_with(|c: char| c.is_ascii_alphabetic()) => r,
        _ => key,
    };
    Some(format!("k{}", camel_case(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(module: &str, repo: Option<&str>) -> CheckedModule {
        let y = ModYaml::parse(Path::new("m/chimaera_mod.yaml"), module).unwrap();
        let r = repo.map(|r| ModYaml::parse(Path::new("chimaera_repo.yaml"), r).unwrap());
        check_module(&y, r.as_ref())
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
             custom: 12\nkType: 13\nkMonitorX: 14\nkOdd: ten\n",
            Some("namespace: other\n"),
        );
        let all = c.problems.join("\n");
        for want in [
            "`module_name: bad-name` is not a Rust identifier",
            "disagrees with `namespace: other`",
            "`kCreate: 1`: `kCreate` is inherited and its id is 0",
            "`kA: 5`: custom methods have ids from 10",
            "duplicate method id 10: `kB` (line 5) and `kC` (line 6)",
            "unknown key `custom` (did you mean `kCustom`?)",
            "the handler `type`, a Rust keyword",
            "`monitor_…` names a monitor function",
            "`kOdd` is not an integer method id",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn the_namespace_comes_from_either_file() {
        assert!(check("module_name: m\n", None).problems[0].contains("no namespace"));
        let c = check("module_name: m\nnamespace: x\n", None);
        assert_eq!(c.lib_name().as_deref(), Some("x_m"));
        let c = check("module_name: m\n", Some("namespace: why\n"));
        assert_eq!(c.lib_name().as_deref(), Some("why_m"));
    }

    #[test]
    fn hints_for_keys_without_their_k() {
        for (key, want) in [
            ("kbar", Some("kBar")),
            ("KBar", Some("kBar")),
            ("foo_bar", Some("kFooBar")),
            ("Custom", Some("kCustom")),
            ("a-b", None),
        ] {
            assert_eq!(method_key_hint(key).as_deref(), want, "{key}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("mod_name") && is_identifier("_x") && is_identifier("A1"));
        for bad in ["", "_", "1a", "a-b", "fn", "type", "a b", "é"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn the_repo_yaml_is_found_above_the_module_directory() {
        let base = std::env::temp_dir().join(format!("chi-check-{}", std::process::id()));
        let module = base.join("repo/m");
        std::fs::create_dir_all(&module).unwrap();
        std::fs::write(base.join("repo").join(REPO_YAML), "namespace: a\n").unwrap();
        std::fs::write(module.join(REPO_YAML), "namespace: ignored\n").unwrap();
        assert_eq!(
            find_repo_yaml(&module.join(MOD_YAML)),
            Some(base.join("repo").join(REPO_YAML))
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
