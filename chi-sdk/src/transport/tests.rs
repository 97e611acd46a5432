//! The ZeroMQ backend in one process: a server thread and clients with and
//! without the key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::auth::ControlKey;

/// A server on a free port answering each request with its size (or `rejected
/// SIZE PARTS`) until dropped.
struct Echo {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A server admitting `key` on a free port of 127.0.0.1.
fn bind_free(key: &ControlKey) -> (u16, ZmqServer) {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if let Ok(s) = ZmqServer::bind("127.0.0.1", port, key.clone()) {
            return (port, s);
        }
    }
}

impl Echo {
    fn start(key: ControlKey) -> Echo {
        let (port, mut server) = bind_free(&key);
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                let (caller, answer) = match server.recv(Duration::from_millis(20)).unwrap() {
                    None => continue,
                    Some((c, Incoming::Request(m))) => (c, format!("len {}", m.len())),
                    Some((c, Incoming::Rejected { size, parts })) => {
                        (c, format!("rejected {size} {parts}"))
                    }
                };
                server.reply(&caller, answer.as_bytes()).unwrap();
            }
        });
        Echo {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const T: Duration = Duration::from_secs(5);

#[test]
fn the_key_admits_and_any_other_is_refused_at_once() {
    let key = ControlKey::generate().unwrap();
    let echo = Echo::start(key.clone());
    let ok = ZmqClient::new("127.0.0.1", echo.port, key);
    assert_eq!(ok.request(b"hello", T).unwrap(), b"len 5");

    let wrong = ZmqClient::new("127.0.0.1", echo.port, ControlKey::generate().unwrap());
    let t0 = Instant::now();
    match wrong.request(b"stop", T) {
        Err(TransportError::NotAuthorised { endpoint, owner }) => {
            assert!(endpoint.contains(&echo.port.to_string()));
            assert_eq!(owner, Some(crate::auth::current_uid()));
        }
        other => panic!("a wrong key: {other:?}"),
    }
    // Refused by the handshake, not by waiting out the timeout.
    assert!(t0.elapsed() < T, "{:?}", t0.elapsed());
    let msg = wrong.request(b"x", T).unwrap_err().to_string();
    assert!(msg.starts_with("not authorised"), "{msg}");

    // A client with no credentials at all gets nothing.
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::REQ).unwrap();
    raw.set_linger(0).unwrap();
    raw.set_rcvtimeo(300).unwrap();
    raw.connect(&tcp_endpoint("127.0.0.1", echo.port)).unwrap();
    raw.send(b"status".as_slice(), 0).unwrap();
    assert_eq!(raw.recv_bytes(0), Err(zmq::Error::EAGAIN));

    // The server still serves.
    assert_eq!(ok.request(b"again", T).unwrap(), b"len 5");
}

#[test]
fn sizes_are_bounded() {
    let key = ControlKey::generate().unwrap();
    let echo = Echo::start(key.clone());
    let c = ZmqClient::new("127.0.0.1", echo.port, key.clone());
    let at_limit = vec![b'x'; MAX_REQUEST_BYTES];
    assert_eq!(
        c.request(&at_limit, T).unwrap(),
        format!("len {MAX_REQUEST_BYTES}").as_bytes()
    );
    match c.request(&vec![b'x'; MAX_REQUEST_BYTES + 1], T) {
        Err(TransportError::TooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (MAX_REQUEST_BYTES + 1, MAX_REQUEST_BYTES))
        }
        other => panic!("an oversized request: {other:?}"),
    }

    // A raw peer with the key: a frame over the limit drops the connection (no
    // reply); parts within it but over it in total are rejected with a reply.
    let ctx = zmq::Context::new();
    let raw = || {
        let s = ctx.socket(zmq::REQ).unwrap();
        s.set_linger(0).unwrap();
        s.set_rcvtimeo(2000).unwrap();
        s.set_plain_username(Some(PLAIN_USER)).unwrap();
        s.set_plain_password(Some(&key.to_hex())).unwrap();
        s.connect(&tcp_endpoint("127.0.0.1", echo.port)).unwrap();
        s
    };
    let big = raw();
    big.set_rcvtimeo(500).unwrap();
    big.send(vec![0u8; MAX_REQUEST_BYTES + 1], 0).unwrap();
    assert_eq!(big.recv_bytes(0), Err(zmq::Error::EAGAIN));
    let parts = raw();
    let half = vec![0u8; MAX_REQUEST_BYTES / 2 + 1];
    parts
        .send_multipart([half.as_slice(), half.as_slice()], 0)
        .unwrap();
    assert_eq!(
        parts.recv_bytes(0).unwrap(),
        format!("rejected {} 2", 2 * half.len()).as_bytes()
    );
    let two = raw();
    two.send_multipart([b"a".as_slice(), b"b"], 0).unwrap();
    assert_eq!(two.recv_bytes(0).unwrap(), b"rejected 2 2");
    assert_eq!(c.request(b"fine", T).unwrap(), b"len 4");
}

#[test]
fn nobody_listening_is_said_at_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = ZmqClient::new("127.0.0.1", port, ControlKey::generate().unwrap());
    assert!(matches!(
        c.request(b"x", T),
        Err(TransportError::NoRuntime { .. })
    ));
}

#[test]
fn replies_go_to_their_callers_in_any_order() {
    let key = ControlKey::generate().unwrap();
    let (port, mut server) = bind_free(&key);
    let ask = |what: &'static [u8]| {
        let key = key.clone();
        std::thread::spawn(move || ZmqClient::new("127.0.0.1", port, key).request(what, T))
    };
    let first = ask(b"first");
    let mut next = || loop {
        if let Some((c, Incoming::Request(m))) = server.recv(T).unwrap() {
            return (c, m);
        }
    };
    let (held, m) = next();
    assert_eq!(m, b"first");
    // The first waits; a second caller is answered meanwhile.
    let second = ask(b"second");
    let (c, m) = next();
    assert_eq!(m, b"second");
    assert_ne!(c, held);
    server.reply(&c, b"to the second").unwrap();
    assert_eq!(second.join().unwrap().unwrap(), b"to the second");
    assert!(!first.is_finished());
    server.reply(&held, b"to the first").unwrap();
    assert_eq!(first.join().unwrap().unwrap(), b"to the first");
}
