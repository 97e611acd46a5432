//! Hostfile entries as addresses.
//!
//! libzmq binds and connects to IP addresses, not host names: every entry of
//! the hostfile (`node01`, `10.0.0.[1-4]`, ...) is resolved once, at start,
//! with the system's resolver, the first IPv4 address preferred. An entry
//! that does not resolve stops the start with an error naming it: a
//! membership list with a hole in it would give nodes different ids on
//! different machines.

use std::net::{IpAddr, ToSocketAddrs};

/// An entry that does not resolve.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot resolve hostfile entry '{host}' (node {node}): {why}; fix the hostfile, or the name service (/etc/hosts, DNS) of this machine"
)]
pub struct ResolveError {
    /// The entry.
    pub host: String,
    /// Its node id.
    pub node: u32,
    /// What the resolver said.
    pub why: String,
}

/// Resolves `host` (a name or an address) to one IP address, IPv4 first.
pub fn resolve_one(host: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let addrs: Vec<IpAddr> = (host, 0u16)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .map(|a| a.ip())
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| "no address".to_owned())
}

/// Resolves every entry of `hosts`, in order (node id = index + 1).
pub fn resolve(hosts: &[String]) -> Result<Vec<(String, IpAddr)>, ResolveError> {
    hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            resolve_one(h)
                .map(|ip| (h.clone(), ip))
                .map_err(|why| ResolveError {
                    host: h.clone(),
                    node: i as u32 + 1,
                    why,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names_resolve_and_unknown_names_are_named() {
        let r = resolve(&["127.0.0.2".into(), "localhost".into()]).unwrap();
        assert_eq!(r[0].1, "127.0.0.2".parse::<IpAddr>().unwrap());
        assert!(r[1].1.is_loopback());
        let e = resolve(&["127.0.0.1".into(), "no-such-host.invalid".into()]).unwrap_err();
        assert_eq!(e.node, 2);
        assert!(e.to_string().contains("no-such-host.invalid"), "{e}");
    }
}
