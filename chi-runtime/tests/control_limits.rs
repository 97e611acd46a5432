//! Bounds of the control socket, with a real runtime and raw ZeroMQ peers that
//! hold the key: oversized and malformed requests (refused, the runtime's memory
//! unchanged, the runtime unharmed) and the registration bound.

mod support;

use std::time::Duration;

use chi_sdk::auth::ControlKey;
use chi_sdk::client::Client;
use chi_sdk::proto::{Reply, Request};
use chi_sdk::transport::{ControlClient, MAX_REQUEST_BYTES, TransportError, ZmqClient};
use support::*;

/// A REQ socket presenting the key of the runtime on `port`, reused for many
/// requests.
fn raw_peer(ctx: &zmq::Context, port: u16) -> zmq::Socket {
    let key = ControlKey::find("127.0.0.1", port).expect("the runtime's key");
    let s = ctx.socket(zmq::REQ).unwrap();
    s.set_linger(0).unwrap();
    s.set_rcvtimeo(10_000).unwrap();
    s.set_plain_username(Some("chimaera")).unwrap();
    s.set_plain_password(Some(&key.to_hex())).unwrap();
    s.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    s
}

/// Sends `bytes` and parses the reply.
fn ask_raw(s: &zmq::Socket, bytes: &[u8]) -> Reply {
    s.send(bytes, 0).unwrap();
    let r = s.recv_bytes(0).expect("a reply within 10 s");
    serde_json::from_slice(&r).expect("a Reply")
}

fn ask(s: &zmq::Socket, req: &Request) -> Reply {
    ask_raw(s, &serde_json::to_vec(req).unwrap())
}

fn error_of(r: Reply) -> String {
    match r {
        Reply::Error { message } => message,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// VmRSS of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kb * 1024
}

#[test]
fn oversized_requests_are_refused_without_growing_the_runtime() {
    let _wd = Watchdog::new("oversized", Duration::from_secs(120));
    let setup = Setup::new("oversized");
    let rt = RuntimeGuard::start(&setup);
    let ctx = zmq::Context::new();
    let before = rss(rt.pid());

    // One 512 MiB frame: the runtime's socket drops the connection on reading
    // the frame's size, before allocating it; no reply comes.
    {
        let big = raw_peer(&ctx, setup.port);
        big.set_rcvtimeo(2_000).unwrap();
        big.send(zmq::Message::with_size(512 << 20), 0).unwrap();
        assert_eq!(big.recv_bytes(0), Err(zmq::Error::EAGAIN));
    }
    let after = rss(rt.pid());
    assert!(
        after < before + (64 << 20),
        "the runtime's RSS went from {} MiB to {} MiB after a 512 MiB request",
        before >> 20,
        after >> 20
    );

    // Parts within the frame limit but over it in total: read, discarded,
    // answered with the limit.
    let peer = raw_peer(&ctx, setup.port);
    let half = vec![b' '; MAX_REQUEST_BYTES / 2 + 1];
    peer.send_multipart([half.as_slice(), half.as_slice()], 0)
        .unwrap();
    let r: Reply = serde_json::from_slice(&peer.recv_bytes(0).unwrap()).unwrap();
    let e = error_of(r);
    assert!(e.contains(&MAX_REQUEST_BYTES.to_string()), "{e}");
    assert!(e.contains("2 part(s)"), "{e}");

    // The SDK does not send what the runtime would refuse.
    let key = ControlKey::find("127.0.0.1", setup.port).unwrap();
    let c = ZmqClient::new("127.0.0.1", setup.port, key);
    match c.request(&vec![b' '; MAX_REQUEST_BYTES + 1], Duration::from_secs(5)) {
        Err(e @ TransportError::TooLarge { .. }) => {
            assert!(e.to_string().contains("65536"), "{e}")
        }
        other => panic!("an oversized request from the SDK: {other:?}"),
    }

    assert!(rt.exit_status().is_none(), "the runtime exited");
    assert_eq!(Client::status(&setup.opts()).unwrap().pid, rt.pid());
    rt.stop();
}

#[test]
fn malformed_requests_get_an_error_reply() {
    let _wd = Watchdog::new("malformed", Duration::from_secs(100));
    let setup = Setup::new("malformed");
    let rt = RuntimeGuard::start(&setup);
    let ctx = zmq::Context::new();
    let peer = raw_peer(&ctx, setup.port);
    let deep = "[".repeat(MAX_REQUEST_BYTES - 1);
    let mut rng = Rng::new(0x5eed);
    let noise: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
    for bad in [
        b"".as_slice(),
        b"\xff\xfe\x00garbage",
        &noise,
        b"{",
        b"null",
        br#"{"op":"launch"}"#,
        br#"{"op":"register"}"#,
        br#"{"op":"register","pid":-1}"#,
        br#"{"op":"register","pid":"1"}"#,
        br#"{"op":"unregister","client_id":1e99}"#,
        deep.as_bytes(),
    ] {
        let e = error_of(ask_raw(&peer, bad));
        assert!(e.starts_with("malformed request"), "{e}");
    }
    // Well-formed but impossible: refused with a reason.
    let e = error_of(ask(&peer, &Request::Register { pid: u32::MAX }));
    assert!(e.contains("not running"), "{e}");
    assert!(matches!(
        ask(&peer, &Request::Unregister { client_id: 12345 }),
        Reply::Ok { .. }
    ));
    let st = Client::status(&setup.opts()).unwrap();
    assert_eq!((st.pid, st.clients), (rt.pid(), 0));
    rt.stop();
}

#[test]
fn registrations_past_the_bound_are_refused() {
    let _wd = Watchdog::new("registrations", Duration::from_secs(200));
    const MAX_CLIENTS: usize = 100;
    let setup = Setup::with(
        "registrations",
        ConfigOpts {
            extra: format!("control:\n  max_clients: {MAX_CLIENTS}\n"),
            ..ConfigOpts::default()
        },
    );
    let rt = RuntimeGuard::start(&setup);
    let ctx = zmq::Context::new();
    let peer = raw_peer(&ctx, setup.port);
    let me = std::process::id();
    let register = Request::Register { pid: me };

    // The same pid many times: each registration is a client, counted.
    let mut ids = Vec::with_capacity(MAX_CLIENTS);
    for _ in 0..MAX_CLIENTS {
        match ask(&peer, &register) {
            Reply::Registered(r) => ids.push(r.client_id),
            other => panic!("registration {} refused: {other:?}", ids.len() + 1),
        }
    }
    assert_eq!(
        Client::status(&setup.opts()).unwrap().clients as usize,
        MAX_CLIENTS
    );
    let e = error_of(ask(&peer, &register));
    assert!(
        e.contains(&format!("{MAX_CLIENTS} registered clients")),
        "{e}"
    );
    assert!(e.contains("control.max_clients"), "{e}");
    // The SDK client says the same.
    let err = Client::connect(setup.opts()).unwrap_err().to_string();
    assert!(err.contains(&MAX_CLIENTS.to_string()), "{err}");

    // One leaves: one more may come.
    assert!(matches!(
        ask(&peer, &Request::Unregister { client_id: ids[7] }),
        Reply::Ok { .. }
    ));
    assert!(matches!(ask(&peer, &register), Reply::Registered(_)));
    assert!(matches!(ask(&peer, &register), Reply::Error { .. }));
    assert!(rt.log().contains("registration refused"));
    rt.stop();
}
