//! Files for the configuration tests: a scratch directory per test, files
//! written into it, and the check that a message names file, line and key.

use std::path::{Path, PathBuf};

/// A fresh directory for one test.
pub fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chi-config-tests-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Writes `text` to `dir/name`; returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

/// The message names `file`, then `:line:` and the key in backticks.
pub fn assert_names(message: &str, file: &Path, line: u64, key: &str) {
    let file = file.display().to_string();
    assert!(
        message.contains(&format!("{file}:{line}:")),
        "no `{file}:{line}:` in:\n{message}"
    );
    assert!(
        message.contains(&format!("`{key}`")),
        "no key `{key}` in:\n{message}"
    );
}
