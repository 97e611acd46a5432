//! A flood of requests that all fail: the peer thread sends the replies
//! it queues as they pile up (past about 1 MiB), rather than holding them
//! all until the frame is handled.

use std::time::{Duration, Instant};

use super::{InProcNet, LIMIT, batch_frame, hosting, request};
use crate::cluster::frame::{Frame, Kind, decode_batch};
use crate::cluster::pools::NoPools;
use crate::cluster::transport::PeerTransport;
use crate::remote::record::Record;

#[test]
fn the_replies_to_a_flood_of_failing_requests_leave_as_they_pile_up() {
    let net = InProcNet::new();
    // Node 1 hosts no pools: every request fails with a reply of about 100
    // bytes. Node 2 is a bare endpoint the test reads.
    let a = hosting(Box::new(net.attach(1)), 1, 10, Box::new(NoPools));
    let mut b = net.attach(2);
    const N: u64 = 30_000;
    let records: Vec<Record> = (1..=N).map(|id| Record::Request(request(id, 0))).collect();
    net.inject(1, batch_frame(Kind::TaskBatch, 2, 5, &records))
        .unwrap();
    let (mut frames, mut replies) = (0, 0u64);
    let t0 = Instant::now();
    while replies < N {
        assert!(t0.elapsed() < LIMIT, "{replies} replies of {N}");
        let Some(r) = b.recv(Duration::from_millis(50)).unwrap() else {
            continue;
        };
        let f = Frame::decode(&r.bytes).unwrap();
        if f.kind == Kind::ReplyBatch {
            frames += 1;
            replies += decode_batch(f.kind, f.payload).unwrap().len() as u64;
        }
    }
    assert_eq!(replies, N);
    assert!(
        frames >= 2,
        "{N} replies of ~100 bytes left in {frames} frame"
    );
    drop(a);
}
