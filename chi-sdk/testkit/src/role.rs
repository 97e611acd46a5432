//! Child roles and their parameters.
//!
//! A child role is a top-level `#[test]` function that does its work only in a
//! child process its parent test started ([`Children::spawn`](crate::Children::spawn)).
//! It is marked `#[ignore = "child role: run by its parent test"]` ([`ROLE_IGNORE`]),
//! so a normal run lists it as ignored instead of counting a test that cannot
//! fail as passed; the parent runs it with `--ignored --exact <role>`
//! ([`role_args`]) and [`ROLE_ENV`] set, and fails if the child fails or runs no
//! test. The function itself still starts with `if !child_role("<role>") { return; }`,
//! so that `cargo test -- --include-ignored` does not run it without its parent.

/// Environment variable naming the child role a re-executed test binary runs.
pub const ROLE_ENV: &str = "CHI_TEST_ROLE";

/// The reason of the `#[ignore]` that marks a child role.
pub const ROLE_IGNORE: &str = "child role: run by its parent test";

/// The arguments that make a test binary run the child role `role`, and only it:
/// the ignored test named exactly `role`, output not captured, on one thread.
pub fn role_args(role: &str) -> [&str; 5] {
    [
        "--ignored",
        "--exact",
        role,
        "--nocapture",
        "--test-threads=1",
    ]
}

/// Whether this process is a child started to play `role`.
pub fn child_role(role: &str) -> bool {
    std::env::var(ROLE_ENV).is_ok_and(|r| r == role)
}

/// A parameter passed to a child.
pub fn env_str(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("child parameter {key} is missing"))
}

/// A numeric parameter passed to a child.
pub fn env_u64(key: &str) -> u64 {
    let v = env_str(key);
    v.parse()
        .unwrap_or_else(|_| panic!("child parameter {key}={v:?} is not a number"))
}
