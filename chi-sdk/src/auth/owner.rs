//! Which user owns the socket listening on a TCP address, from `/proc/net/tcp`.
//!
//! The kernel lists every socket of the network namespace with its owner's uid,
//! readable by every user. A client uses it to learn whose runtime answers on a
//! port before it looks for a key, so another user's runtime is named as such.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `st` of a listening socket in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// The uid of the socket listening on `ip:port` (or on the unspecified address
/// and `port`), if `/proc/net/tcp` (`tcp6` for IPv6) lists one.
pub fn listener_uid(ip: IpAddr, port: u16) -> Option<u32> {
    let file = match ip {
        IpAddr::V4(_) => "/proc/net/tcp",
        IpAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(file).ok()?;
    parse_listener(&text, ip, port)
}

fn parse_listener(text: &str, ip: IpAddr, port: u16) -> Option<u32> {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid ...
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[3] != TCP_LISTEN {
            return None;
        }
        let (addr, p) = f[1].split_once(':')?;
        if u16::from_str_radix(p, 16).ok()? != port {
            return None;
        }
        let local = parse_addr(addr)?;
        (local == ip || local.is_unspecified())
            .then(|| f[7].parse().ok())
            .flatten()
    })
}

/// An address as the kernel prints it: 32-bit words in hexadecimal, each in
/// host byte order.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

// Real segments, processes, files or sockets: not under Miri (see
// scripts/check-miri.sh); run natively.
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    fn hex4(ip: Ipv4Addr) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip.octets()))
    }

    #[test]
    fn finds_the_listener_and_its_uid() {
        let lo = hex4(Ipv4Addr::LOCALHOST);
        let two = hex4(Ipv4Addr::new(127, 0, 0, 2));
        let text = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: {lo}:2529 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0\n\
             1: {two}:2529 00000000:0000 0A 00000000:00000000 00:00000000 00000000  2000        0 2 1 0 100 0 0 10 0\n\
             2: {lo}:2529 {lo}:D431 01 00000000:00000000 00:00000000 00000000  3000        0 3 1 0 100 0 0 10 0\n\
             3: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  4000        0 4 1 0 100 0 0 10 0\n"
        );
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(parse_listener(&text, lo, 0x2529), Some(1000));
        assert_eq!(
            parse_listener(&text, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0x2529),
            Some(2000)
        );
        // Only the connected socket uses this port on 127.0.0.3: not a listener.
        assert_eq!(
            parse_listener(&text, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), 0x2529),
            None
        );
        // A listener on 0.0.0.0 serves every address.
        assert_eq!(parse_listener(&text, lo, 0x1F90), Some(4000));
        assert_eq!(parse_listener(&text, lo, 1), None);
    }

    #[test]
    fn a_live_listener_is_ours() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(
            listener_uid(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            Some(super::super::current_uid())
        );
        drop(l);
        assert_eq!(listener_uid(IpAddr::V4(Ipv4Addr::LOCALHOST), port), None);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn ipv6_words() {
        let hex = "00000000000000000000000001000000";
        assert_eq!(parse_addr(hex), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }
}
