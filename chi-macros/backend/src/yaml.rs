//! Reading a module's `chimaera_mod.yaml`: its method keys and ids.
//!
//! ```yaml
//! module_name: MOD_NAME
//! namespace: chimaera
//! version: 1.0.0
//! kCreate: 0        # inherited methods, fixed ids
//! kDestroy: 1
//! kNodeFailure: -1  # -1: not supported
//! kCustom: 10       # custom methods from 10
//! ```
//!
//! Every top-level key of the form `k` + upper-case letter is a method; its value
//! is its id, `-1` meaning unsupported, and a comment after it describes it.
//! Other keys with a scalar value are kept as text; whether they are allowed is
//! for the rules (`check`) to say. A repository's `chimaera_repo.yaml` is read
//! the same way (only its `namespace` matters to a module).
//!
//! This module only reads: it depends on nothing of the crate but `names`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::names::is_method_key;

/// A module's method file, beside its `Cargo.toml`.
pub const MOD_YAML: &str = "chimaera_mod.yaml";

/// A repository's file, in its root directory.
pub const REPO_YAML: &str = "chimaera_repo.yaml";

/// The nearest `chimaera_repo.yaml` in the directories above `mod_yaml`'s own
/// (a repository holds its modules in subdirectories): the file a module
/// takes its namespace from.
pub fn find_repo_yaml(mod_yaml: &Path) -> Option<PathBuf> {
    let dir = mod_yaml.parent()?;
    dir.ancestors()
        .skip(1)
        .map(|d| d.join(REPO_YAML))
        .find(|p| p.is_file())
}

/// The method entries of one `chimaera_mod.yaml`.
#[derive(Debug, Clone)]
pub struct ModYaml {
    /// The file.
    pub path: PathBuf,
    /// Method key → its entry.
    pub methods: BTreeMap<String, MethodEntry>,
    /// Other top-level keys whose value is a string or a number (`module_name`,
    /// `namespace`, `version`…) → the value as text.
    pub texts: BTreeMap<String, TextEntry>,
}

/// A top-level metadata key with a scalar value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEntry {
    /// The value as text.
    pub value: String,
    /// 1-based line of the value.
    pub line: u64,
}

/// One method key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodEntry {
    /// The id (`-1` = unsupported), or `None` if the value is not an integer.
    pub id: Option<i64>,
    /// 1-based line of the value.
    pub line: u64,
    /// The comment after the value on its line (`kEcho: 14  # Echoes a value`
    /// → `Echoes a value`), if any.
    pub comment: Option<String>,
}

/// Why a `chimaera_mod.yaml` could not be read.
#[derive(Debug)]
pub enum YamlError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The file is not valid YAML, or not a mapping.
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<u64>,
        /// 1-based column, when known.
        column: Option<u64>,
        /// The parser's message.
        message: String,
    },
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            YamlError::Io { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            YamlError::Parse {
                path,
                line,
                column,
                message,
            } => {
                write!(f, "cannot parse {}", path.display())?;
                match (line, column) {
                    (Some(l), Some(c)) => write!(f, ":{l}:{c}")?,
                    (Some(l), None) => write!(f, ":{l}")?,
                    _ => {}
                }
                write!(f, ": {message}")
            }
        }
    }
}

impl std::error::Error for YamlError {}

impl ModYaml {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<ModYaml, YamlError> {
        let text = std::fs::read_to_string(path).map_err(|error| YamlError::Io {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text`, the content of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<ModYaml, YamlError> {
        let raw: BTreeMap<String, serde_saphyr::Spanned<Value>> = if text.trim().is_empty() {
            BTreeMap::new()
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                let loc = e.location();
                let message = short_message(&e.to_string());
                YamlError::Parse {
                    path: path.to_owned(),
                    line: loc.map(|l| l.line()),
                    column: loc.map(|l| l.column()),
                    message,
                }
            })?
        };
        let mut methods = BTreeMap::new();
        let mut texts = BTreeMap::new();
        for (k, v) in raw {
            let line = v.referenced.line();
            if is_method_key(&k) {
                let id = match v.value {
                    Value::Int(i) => Some(i),
                    _ => None,
                };
                let comment = id.and_then(|_| trailing_comment(text, line));
                methods.insert(k, MethodEntry { id, line, comment });
            } else {
                let value = match v.value {
                    Value::Int(i) => i.to_string(),
                    Value::Str(s) => s,
                    Value::Other => continue,
                };
                texts.insert(k, TextEntry { value, line });
            }
        }
        Ok(ModYaml {
            path: path.to_owned(),
            methods,
            texts,
        })
    }
}

/// The parser's message without its `error: line L column C:` prefix and
/// source snippet (the position is reported separately).
fn short_message(full: &str) -> String {
    let first = full.lines().next().unwrap_or(full).trim();
    let first = first.strip_prefix("error:").unwrap_or(first).trim_start();
    let first = match first.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(first, |(_, m)| m),
        None => first,
    };
    first.to_string()
}

/// The comment at the end of 1-based `line` of `text`: what follows the first
/// `#` that follows a blank (a `#` elsewhere belongs to a value). Only asked of
/// lines whose value is an integer, which holds no `#`.
fn trailing_comment(text: &str, line: u64) -> Option<String> {
    let l = text
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let at = l
        .char_indices()
        .find_map(|(i, c)| (c == '#' && l[..i].ends_with([' ', '\t'])).then_some(i))?;
    let comment = l[at + 1..].trim();
    (!comment.is_empty()).then(|| comment.to_owned())
}

/// A top-level value: an integer, a string, or anything else.
enum Value {
    Int(i64),
    Str(String),
    Other,
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Other, Value::Int))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Other)
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Other)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Other)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "\
# MOD_NAME ChiMod Configuration
module_name: MOD_NAME
namespace: chimaera
version: 1.0.0

kCreate: 0        # Container creation (required)
kDestroy: 1
kNodeFailure: -1  # Not implemented
kCustom: 10
kCoMutexTest: 20
kOdd: ten
";

    #[test]
    fn reads_method_keys_ids_and_lines() {
        let y = ModYaml::parse(Path::new("m.yaml"), SEED).unwrap();
        let keys: Vec<&str> = y.methods.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "kCoMutexTest",
                "kCreate",
                "kCustom",
                "kDestroy",
                "kNodeFailure",
                "kOdd"
            ]
        );
        assert_eq!(
            y.methods["kCreate"],
            MethodEntry {
                id: Some(0),
                line: 6,
                comment: Some("Container creation (required)".into()),
            }
        );
        assert_eq!(y.methods["kNodeFailure"].id, Some(-1));
        assert_eq!(
            y.methods["kCustom"],
            MethodEntry {
                id: Some(10),
                line: 9,
                comment: None,
            }
        );
        assert_eq!(y.methods["kOdd"].id, None);
        assert_eq!(y.texts["module_name"].value, "MOD_NAME");
        assert_eq!(
            y.texts["namespace"],
            TextEntry {
                value: "chimaera".into(),
                line: 3
            }
        );
    }

    #[test]
    fn a_parse_error_names_file_and_line() {
        let e = ModYaml::parse(Path::new("/x/chimaera_mod.yaml"), "kA: 1\nkB: [2\nkC: 3\n")
            .unwrap_err();
        let YamlError::Parse { line, .. } = &e else {
            panic!("{e}")
        };
        assert!(line.is_some(), "{e}");
        assert!(
            e.to_string()
                .starts_with("cannot parse /x/chimaera_mod.yaml:"),
            "{e}"
        );
    }

    #[test]
    fn the_repo_yaml_is_found_above_the_module_directory() {
        let base = std::env::temp_dir().join(format!("chi-yaml-{}", std::process::id()));
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

    #[test]
    fn an_empty_file_has_no_methods() {
        assert!(
            ModYaml::parse(Path::new("e.yaml"), "# nothing\n")
                .unwrap()
                .methods
                .is_empty()
        );
    }
}
