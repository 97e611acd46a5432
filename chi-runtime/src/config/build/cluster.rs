//! The `cluster` section: the peer port, this node's hostfile entry, the
//! heartbeat timing and the cluster key's file.

use super::*;

impl Builder<'_> {
    pub(super) fn cluster(
        &self,
        raw: RawCluster,
        port: u16,
        hosts: &[String],
    ) -> Result<ClusterConfig, ConfigError> {
        let heartbeat = self.duration(raw.heartbeat, "cluster.heartbeat", HEARTBEAT_RANGE)?;
        let timeout_item = self.need(raw.peer_timeout.clone(), "cluster.peer_timeout")?;
        let peer_timeout =
            self.duration(raw.peer_timeout, "cluster.peer_timeout", PEER_TIMEOUT_RANGE)?;
        if peer_timeout < heartbeat * 2 {
            return Err(self.bad(
                &timeout_item,
                "cluster.peer_timeout",
                format!(
                    "{peer_timeout:?} is shorter than two heartbeats (cluster.heartbeat is \
                     {heartbeat:?}): one late heartbeat would mark a live node down; make it \
                     at least {:?}",
                    heartbeat * 2
                ),
            ));
        }
        let task_timeout =
            self.duration(raw.task_timeout, "cluster.task_timeout", TASK_TIMEOUT_RANGE)?;
        let port_item = self.need(raw.port, "cluster.port")?;
        let peer_port = match port_item.value {
            None => port.checked_add(1).ok_or_else(|| {
                self.bad(
                    &port_item,
                    "cluster.port",
                    "the control port is 65535, so the default peer port (port + 1) does not \
                     exist; set cluster.port",
                )
            })?,
            Some(p) => {
                self.note("cluster.port", &port_item);
                if p == 0 || p == port {
                    return Err(self.bad(
                        &port_item,
                        "cluster.port",
                        format!(
                            "{p} is not allowed: the peer port must be 1 to 65535 and differ from \
                             the control port ({port})"
                        ),
                    ));
                }
                p
            }
        };
        let node = match self.need(raw.node, "cluster.node")? {
            Item { value: None, .. } => None,
            item @ Item { value: Some(_), .. } => {
                self.note("cluster.node", &item);
                let name = item.value.clone().unwrap_or_default();
                if !hosts.contains(&name) {
                    return Err(self.bad(
                        &item,
                        "cluster.node",
                        format!(
                            "'{name}' is not an entry of the hostfile ({}); name one of its \
                             entries, or ~ for the first the runtime can bind",
                            list_hosts(hosts)
                        ),
                    ));
                }
                Some(name)
            }
        };
        let key_file = match self.need(raw.key_file, "cluster.key_file")? {
            Item { value: None, .. } => None,
            Item {
                value: Some(path),
                from_user,
                ..
            } => Some(self.resolve(from_user, path)),
        };
        Ok(ClusterConfig {
            port: peer_port,
            node,
            heartbeat,
            peer_timeout,
            task_timeout,
            key_file,
        })
    }
}

/// The first few hosts, for an error.
fn list_hosts(hosts: &[String]) -> String {
    let mut s = hosts.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
    if hosts.len() > 4 {
        s.push_str(&format!(", ... {} in all", hosts.len()));
    }
    s
}
