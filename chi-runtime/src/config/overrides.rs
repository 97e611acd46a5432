//! What the command line may change after loading: the hostfile and this
//! node's entry (`chi-runtime start --hostfile F --node H`, as the local
//! cluster launcher and HPC launchers use them).

use std::path::Path;

use super::error::ConfigError;
use super::hostfile::{load_hostfile, with_origin};
use super::model::Config;

impl Config {
    /// Replaces the hostfile with the one at `path` (given on the command
    /// line); `cluster.node` must still name one of its entries.
    pub fn with_hostfile(&mut self, path: &Path) -> Result<(), ConfigError> {
        let hosts =
            load_hostfile(path).map_err(|e| with_origin(e, " (named by --hostfile)".to_owned()))?;
        if let Some(node) = &self.cluster.node
            && !hosts.contains(node)
        {
            return Err(ConfigError::Hostfile {
                file: path.display().to_string(),
                line: 0,
                message: format!(
                    "cluster.node '{node}' of the configuration is not an entry of this hostfile"
                ),
                origin: " (named by --hostfile)".to_owned(),
            });
        }
        self.hostfile = Some(path.to_owned());
        self.hosts = hosts;
        Ok(())
    }

    /// Makes `node` (an entry of the hostfile, given by `--node`) the one this
    /// runtime binds.
    pub fn with_node(&mut self, node: &str) -> Result<(), ConfigError> {
        if !self.hosts.iter().any(|h| h == node) {
            return Err(ConfigError::Hostfile {
                file: self.hostfile.as_ref().map_or_else(
                    || "<no hostfile: 127.0.0.1>".to_owned(),
                    |p| p.display().to_string(),
                ),
                line: 0,
                message: format!(
                    "--node '{node}' is not an entry of the hostfile; name one of its entries"
                ),
                origin: String::new(),
            });
        }
        self.cluster.node = Some(node.to_owned());
        Ok(())
    }
}
