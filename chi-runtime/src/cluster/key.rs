//! Which cluster key a runtime presents to its peers and asks of them
//! (`cluster.key_file`; the key file itself: `chi_sdk::auth`).

use std::path::Path;

use anyhow::{Context, Result};
use chi_sdk::auth::ControlKey;

/// The cluster key of `key_file`, else of `~/.chimaera/cluster.key`, else
/// (no home directory: warned, other hosts do not read it) of `cluster.key`
/// in `own_dir`, the per-user directory; made if missing.
pub fn cluster_key(key_file: Option<&Path>, own_dir: &Path) -> Result<ControlKey> {
    let path = match key_file
        .map(Path::to_path_buf)
        .or_else(chi_sdk::auth::default_cluster_key_file)
    {
        Some(p) => p,
        None => {
            let p = own_dir.join("cluster.key");
            tracing::warn!(
                path = %p.display(),
                "no home directory (HOME) for the cluster key: using this node's own directory, \
                 which nodes on other hosts do not read; set cluster.key_file to a file every \
                 node reads"
            );
            p
        }
    };
    let (key, made) = ControlKey::load_or_create(&path).with_context(|| {
        format!(
            "the cluster key {} (cluster.key_file): every node of the cluster reads it",
            path.display()
        )
    })?;
    if made {
        tracing::info!(
            path = %path.display(),
            "made the cluster key: every node must read the same one (a shared home directory, or a copy)"
        );
    } else {
        tracing::debug!(path = %path.display(), "cluster key read");
    }
    Ok(key)
}
