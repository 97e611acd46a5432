//! The built-in defaults and where a configuration comes from.
//!
//! The defaults are a commented YAML file, `chi-runtime/config/chimaera_default.yaml`,
//! embedded in the binary; the user's file, named by [`ENV_SERVER_CONF`], is
//! applied over them key by key.

/// The environment variable naming the server configuration file.
pub const ENV_SERVER_CONF: &str = "CHI_SERVER_CONF";

/// How errors in the built-in defaults name their "file".
pub const DEFAULT_SOURCE_NAME: &str = "<built-in defaults>";

/// The built-in default configuration, commented.
pub(super) const DEFAULT_YAML: &str = include_str!("../../config/chimaera_default.yaml");
