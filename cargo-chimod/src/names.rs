//! The names `cargo chimod new` accepts for namespaces and modules.
//!
//! A name becomes part of a library file (`lib{namespace}_{module}_runtime.so`),
//! of a crate's lib name and of YAML values, so it must be a lower-case Rust
//! identifier: an ASCII letter, then letters, digits and `_`; no keyword; and
//! not a word YAML reads as a boolean or null (`yes`, `no`, `on`, `off`, `y`,
//! `n`, `true`, `false`, `null`).

use anyhow::{Result, bail};
use chi_macros_backend::names::is_keyword;

/// What a name names, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A repository's namespace.
    Namespace,
    /// A module.
    Module,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Kind::Namespace => "namespace",
            Kind::Module => "module name",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Kind::Namespace => "acme",
            Kind::Module => "my_module",
        }
    }
}

/// Words YAML 1.1 reads as something other than a string.
const YAML_WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];

/// Checks `name` (see the module doc); the error says what is wrong and what
/// to use instead.
pub fn check(kind: Kind, name: &str) -> Result<()> {
    let Some(why) = problem(name) else {
        return Ok(());
    };
    let what = kind.what();
    let suggestion = suggest(name);
    let instead = if !suggestion.is_empty() && suggestion != name && problem(&suggestion).is_none()
    {
        format!("try `{suggestion}`")
    } else if is_keyword(name) || YAML_WORDS.contains(&name) {
        format!("try `{name}_mod`")
    } else {
        format!("use e.g. `{}`", kind.example())
    };
    if name.is_empty() {
        bail!("the {what} is empty: {instead}");
    }
    bail!("'{name}' is not a valid {what}: {why}; {instead}")
}

/// What is wrong with `name`, if anything.
fn problem(name: &str) -> Option<String> {
    let Some(first) = name.chars().next() else {
        return Some("it is empty".into());
    };
    if !first.is_ascii_lowercase() {
        return Some("it must start with a lower-case letter (a-z)".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Some(format!(
            "'{bad}' is not allowed (use lower-case letters, digits and '_', as in a Rust \
             identifier)"
        ));
    }
    if is_keyword(name) {
        return Some("it is a Rust keyword".into());
    }
    if YAML_WORDS.contains(&name) {
        return Some("YAML reads it as a boolean or null, not a name".into());
    }
    None
}

/// `My-Module` → `my_module`: the nearest valid spelling, or empty.
pub fn suggest(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    while s.starts_with(|c: char| !c.is_ascii_lowercase()) {
        s.remove(0);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for ok in ["hello", "my_mod2", "a", "chimaera"] {
            check(Kind::Module, ok).unwrap();
        }
    }

    #[test]
    fn invalid_names_say_why() {
        let cases = [
            ("", "is empty"),
            ("9lives", "must start with a lower-case letter"),
            (
                "Hello",
                "must start with a lower-case letter (a-z); try `hello`",
            ),
            ("My-Mod", "try `my_mod`"),
            ("my-mod", "'-' is not allowed"),
            ("my mod", "try `my_mod`"),
            ("type", "Rust keyword; try `type_mod`"),
            (
                "no",
                "YAML reads it as a boolean or null, not a name; try `no_mod`",
            ),
        ];
        for (name, want) in cases {
            let e = check(Kind::Module, name).unwrap_err().to_string();
            assert!(e.contains(want), "{name:?}: {e}");
        }
        let e = check(Kind::Namespace, "a.b").unwrap_err().to_string();
        assert!(e.starts_with("'a.b' is not a valid namespace"), "{e}");
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("My-Module"), "my_module");
        assert_eq!(suggest("1st"), "st");
    }
}
