//! Child roles and their parameters.

/// Environment variable naming the child role a re-executed test binary runs.
pub const ROLE_ENV: &str = "CHI_TEST_ROLE";

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
