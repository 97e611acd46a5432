//! Loading: the defaults, then the user's file over them.

use std::cell::RefCell;
use std::path::Path;

use super::build::{Builder, Source};
use super::defaults::{DEFAULT_SOURCE_NAME, DEFAULT_YAML, ENV_SERVER_CONF};
use super::error::ConfigError;
use super::model::Config;
use super::parse::parse_raw;
use super::raw::Merge;

impl Config {
    /// The built-in default configuration file, commented: what users copy to start
    /// their own.
    pub fn default_yaml() -> &'static str {
        DEFAULT_YAML
    }

    /// The defaults alone.
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::from_yaml_override("", DEFAULT_SOURCE_NAME)
    }

    /// Loads the configuration: the file named by `CHI_SERVER_CONF` over the defaults,
    /// or the defaults alone when the variable is unset or empty.
    pub fn load() -> Result<Config, ConfigError> {
        match std::env::var_os(ENV_SERVER_CONF) {
            Some(path) if !path.is_empty() => {
                Config::load_file(Path::new(&path), &format!(" (named by {ENV_SERVER_CONF})"))
            }
            _ => {
                tracing::debug!("{ENV_SERVER_CONF} is not set; using the default configuration");
                Config::defaults()
            }
        }
    }

    /// Loads the file at `path` over the defaults.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        Config::load_file(path.as_ref(), "")
    }

    fn load_file(path: &Path, origin: &str) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            what: "config file",
            path: path.to_path_buf(),
            origin: origin.to_owned(),
            source,
        })?;
        let config = Config::from_yaml_override(&text, &path.display().to_string())?;
        tracing::info!(file = %path.display(), "loaded the runtime configuration");
        Ok(config)
    }

    /// Applies the YAML `text` over the defaults. `source_name` names the text in
    /// errors; when it is a path, relative paths in the text are resolved against its
    /// directory.
    pub fn from_yaml_override(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let defaults = parse_raw(DEFAULT_YAML, DEFAULT_SOURCE_NAME)?;
        let user = parse_raw(text, source_name)?;
        let is_path = source_name != DEFAULT_SOURCE_NAME && !source_name.starts_with('<');
        let base_dir = is_path
            .then(|| Path::new(source_name).parent())
            .flatten()
            .filter(|dir| !dir.as_os_str().is_empty());
        let builder = Builder {
            defaults: Source {
                name: DEFAULT_SOURCE_NAME,
                text: DEFAULT_YAML,
                base_dir: None,
            },
            user: Source {
                name: source_name,
                text,
                base_dir,
            },
            origins: RefCell::default(),
        };
        let mut config = builder.build(defaults.merge(user))?;
        config.source = is_path.then(|| source_name.to_owned());
        Ok(config)
    }
}
