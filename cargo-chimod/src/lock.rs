//! `chimaera_methods.lock` as `new` and `refresh` use it. The file format is
//! [`chi_macros_backend::lock`], and the rule that recorded ids are permanent
//! is [`chi_macros_backend::check`]'s: the macros read the same file with the
//! same code, so a build and a refresh say the same about a renumbered
//! method. This adds what only this tool does: errors for the terminal and
//! recording the ids of checked methods.

use std::path::Path;

use anyhow::Result;
use chi_macros_backend::check::Method;
pub use chi_macros_backend::lock::{LOCK_FILE, Lock};

/// Reads the lock at `path`; a missing file is an empty lock.
pub fn load(path: &Path) -> Result<Lock> {
    Lock::load(path).map_err(|p| anyhow::anyhow!("{p}"))
}

/// Records the supported `methods` of `lib` in `lock`; returns the keys added.
pub fn record(lock: &mut Lock, lib: &str, methods: &[Method]) -> Vec<String> {
    methods
        .iter()
        .filter(|m| m.supported() && lock.record(lib, &m.key, m.id))
        .map(|m| m.key.clone())
        .collect()
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
    fn only_supported_methods_are_recorded_once() {
        let mut l = Lock::default();
        let added = record(
            &mut l,
            "a_m",
            &[m("kCreate", 0), m("kFoo", 10), m("kOff", -1)],
        );
        assert_eq!(added, ["kCreate", "kFoo"]);
        assert!(record(&mut l, "a_m", &[m("kFoo", 12)]).is_empty());
        assert_eq!(l.modules["a_m"]["kFoo"], 10);
    }

    #[test]
    fn a_damaged_lock_says_what_to_do() {
        let dir = std::env::temp_dir().join(format!("chimod-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(LOCK_FILE);
        std::fs::write(&path, "[a]\nkFoo = \"x\"\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.contains("restore the file"), "{e}");
        assert!(load(&path).unwrap().modules.is_empty());
    }
}
