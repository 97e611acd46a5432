//! The destroyed ids a node keeps and sends as ranges (`pools/ids.rs`).

use super::*;

/// The bodies of the drop notices node `n[i]` has queued for `to` (taken
/// out; the other records are queued again).
fn drops_for(outs: &mut [Outbox], i: usize, to: u32) -> Vec<String> {
    let mut drops = Vec::new();
    let mut again = Vec::new();
    for (dest, kind, payload) in outs[i].drain() {
        for r in decode_batch(kind, &payload).unwrap() {
            match Record::decode(r).unwrap() {
                Record::Request(q) if dest == to && q.method == CTL_DROP => {
                    drops.push(String::from_utf8(q.body.clone()).unwrap());
                    again.push((dest, Record::Request(q)));
                }
                rec => again.push((dest, rec)),
            }
        }
    }
    for (dest, rec) in again {
        match rec {
            Record::Request(q) => outs[i].request(dest, &q),
            Record::Reply(p) => outs[i].reply(dest, &p),
        }
    }
    drops
}

#[test]
fn a_node_that_joins_after_many_destroys_is_told_them_as_ranges() {
    let shares = Shares::default();
    let (mut n, mut outs) = cluster(3, &shares, None);
    let all = [1, 2, 3];
    let kept: Vec<u64> = (0..5)
        .map(|k| {
            ask_pumped(&mut n, &mut outs, 0, ask(&format!("p{k}"), false), &all)
                .unwrap()
                .id
        })
        .collect();
    // Node 3 is away while pools 0 to 3 and a hundred more made meanwhile
    // are destroyed; pool 4 stays.
    let up = [1, 2];
    for &id in &kept[..4] {
        destroy_pumped(&mut n, &mut outs, 1, id, &up).unwrap();
    }
    for k in 0..100 {
        let id = ask_pumped(&mut n, &mut outs, 1, ask(&format!("q{k}"), false), &up)
            .unwrap()
            .id;
        destroy_pumped(&mut n, &mut outs, 0, id, &up).unwrap();
    }
    assert_eq!(holders(&shares, kept[0]), [3]);
    // Back: node 1 tells it the 104 destroyed ids in two ranges.
    n[0].joined(3, &all, &mut outs[0]);
    let base = kept[0];
    assert_eq!(
        drops_for(&mut outs, 0, 3),
        [format!(
            "[[{},{}],[{},{}]]",
            base,
            base + 3,
            base + 5,
            base + 104
        )]
    );
    n[1].joined(3, &all, &mut outs[1]);
    pump(&mut n, &mut outs, &all);
    for &id in &kept[..4] {
        assert!(holders(&shares, id).is_empty(), "pool {id} still held");
    }
    assert_eq!(holders(&shares, kept[4]), [1, 2, 3]);
    // Node 3 keeps them as ranges too, and gives no id of them again.
    let next = ask_pumped(&mut n, &mut outs, 2, ask("r", false), &[3]).unwrap();
    assert_eq!(next.id, base + 105);
}

#[test]
fn a_drop_of_a_range_ending_before_it_starts_is_refused() {
    let shares = Shares::default();
    let (mut n, _) = cluster(2, &shares, None);
    let mut out = Outbox::default();
    let body = b"[[9,5]]".to_vec();
    assert!(n[1].on_request(1, &control(9, CTL_DROP, body), &[1, 2], &mut out));
    let frames = out.drain();
    let records = decode_batch(frames[0].1, &frames[0].2).unwrap();
    let Record::Reply(p) = Record::decode(records[0]).unwrap() else {
        panic!("not a reply")
    };
    assert_eq!(p.result, FAILED);
    assert!(p.message.contains("[9, 5]"), "{}", p.message);
    // A wide range costs nothing: it is not walked.
    let body = format!("[[0,{}]]", u64::MAX).into_bytes();
    assert!(n[1].on_request(1, &control(10, CTL_DROP, body), &[1, 2], &mut out));
}
