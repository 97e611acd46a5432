//! The names the macros and `cargo chimod` derive from one another.
//!
//! A method key of `chimaera_mod.yaml` is `k` + its name in CamelCase
//! (`kCoMutexTest`). From it follow the handler (`co_mutex_test`), its
//! optional monitor (`monitor_co_mutex_test`), the id constant
//! (`CO_MUTEX_TEST`) and the task struct `#[task]` maps to the key by default
//! (`CoMutexTestTask`). Those derivations, and the tests of what is a Rust
//! identifier, live here so that the YAML rules (`check`), the macros and
//! `cargo chimod` agree on every name. This module depends on nothing else of
//! the crate.

/// Whether `s` has the form of a method key: `k`, an upper-case letter, then
/// letters, digits and `_`.
pub fn is_method_key(s: &str) -> bool {
    let mut c = s.chars();
    c.next() == Some('k')
        && c.next().is_some_and(|c| c.is_ascii_uppercase())
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `FooBar` → `foo_bar` (`CoMutexTest` → `co_mutex_test`, `IOStat` → `io_stat`).
pub fn snake_case(camel: &str) -> String {
    let chars: Vec<char> = camel.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `foo_bar` → `FooBar` (the inverse of [`snake_case`] for handler names).
pub fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The handler of a method key: `kFooBar` → `foo_bar`.
pub fn handler_of(key: &str) -> String {
    snake_case(key.strip_prefix('k').unwrap_or(key))
}

/// The YAML key a task struct maps to: `FooTask` → `kFoo`, `Foo` → `kFoo`.
pub fn task_key(struct_name: &str) -> String {
    let base = match struct_name.strip_suffix("Task") {
        Some(b) if !b.is_empty() => b,
        _ => struct_name,
    };
    format!("k{base}")
}

/// The method key `key` was probably meant to be: `kbar` → `kBar`, `KBar` →
/// `kBar`, `foo_bar` → `kFooBar`; `None` if it has other characters.
pub fn method_key_hint(key: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_of_keys() {
        assert_eq!(snake_case("Custom"), "custom");
        assert_eq!(snake_case("CoMutexTest"), "co_mutex_test");
        assert_eq!(snake_case("NodeFailure"), "node_failure");
        assert_eq!(snake_case("IOStat"), "io_stat");
        assert_eq!(snake_case("Get2Keys"), "get2_keys");
        assert_eq!(handler_of("kCoMutexTest"), "co_mutex_test");
        assert_eq!(camel_case("co_mutex_test"), "CoMutexTest");
    }

    #[test]
    fn task_key_strips_task() {
        assert_eq!(task_key("CustomTask"), "kCustom");
        assert_eq!(task_key("Echo"), "kEcho");
        assert_eq!(task_key("Task"), "kTask");
        assert_eq!(task_key("GetOrCreatePoolTask"), "kGetOrCreatePool");
    }

    #[test]
    fn method_keys() {
        for ok in ["kA", "kCustom", "kIO_Stat2"] {
            assert!(is_method_key(ok), "{ok}");
        }
        for bad in ["k", "ka", "Custom", "kA-b", "module_name"] {
            assert!(!is_method_key(bad), "{bad}");
        }
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
}
