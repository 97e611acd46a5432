//! What pool agreement takes from a peer: ids and specs outside the
//! cluster's bounds are not taken in (they would use up the pool ids, or
//! make a pool of millions of containers), each refusal naming the field.

use super::*;

#[test]
fn ids_and_specs_from_a_peer_outside_the_bounds_are_not_taken_in() {
    let shares = Shares::default();
    let (mut n, mut outs) = cluster(2, &shares, None);
    let up = [1, 2];
    let mut out = Outbox::default();
    // A next id and a destroyed id past the range: the authority's ids go
    // on from where they were.
    let held = format!(r#"{{"next":{},"pools":[]}}"#, u64::MAX);
    assert!(n[0].on_request(2, &control(9, CTL_HELD, held.into_bytes()), &up, &mut out));
    let drop = format!("[{}]", u64::MAX);
    assert!(n[0].on_request(2, &control(10, CTL_DROP, drop.into_bytes()), &up, &mut out));
    let p = ask_pumped(&mut n, &mut outs, 0, ask("p", false), &up).unwrap();
    assert!(p.id < GLOBAL_POOL_BASE + 10, "{}", p.id);
    // Shares of specs out of bounds: refused, nothing made.
    let spec = |id, nodes: Vec<u32>| PoolSpec {
        id,
        module: "m".into(),
        name: "q".into(),
        args: String::new(),
        nodes,
    };
    let next = p.id + 1;
    let bad = [
        (spec(7, vec![1]), "outside the ids"),
        (spec(GLOBAL_POOL_END, vec![1]), "outside the ids"),
        (
            spec(next, vec![1; MAX_CONTAINERS as usize + 1]),
            "65537 containers",
        ),
        (spec(next, vec![]), "0 containers"),
        (spec(next, vec![1, 0]), "on node 0"),
    ];
    let mut out = Outbox::default();
    for (s, _) in &bad {
        let body = serde_json::to_vec(s).unwrap();
        assert!(n[1].on_request(1, &control(11, CTL_SHARE, body), &up, &mut out));
    }
    let frames = out.drain();
    let records = decode_batch(frames[0].1, &frames[0].2).unwrap();
    assert_eq!(records.len(), bad.len());
    for (r, (_, why)) in records.into_iter().zip(bad) {
        let Record::Reply(r) = Record::decode(r).unwrap() else {
            panic!("not a reply")
        };
        assert_eq!(r.result, FAILED);
        assert!(r.message.contains(why), "{why}: {}", r.message);
    }
    assert!(holders(&shares, 7).is_empty() && holders(&shares, next).is_empty());
    // At the end of the range, an ask fails saying so.
    n[0].next_pool = GLOBAL_POOL_END;
    let e = ask_pumped(&mut n, &mut outs, 0, ask("r", false), &up).unwrap_err();
    assert!(e.contains("pool ids are used up"), "{e}");
}
