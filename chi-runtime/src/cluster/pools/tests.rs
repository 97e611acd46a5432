//! Pool agreement between three nodes whose frames are passed by hand.

use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

use super::*;
use crate::cluster::frame::decode_batch;
use crate::remote::record::Record;

type Shares = Arc<Mutex<Vec<(u32, PoolSpec)>>>;

struct Host {
    me: u32,
    shares: Shares,
    refuse: bool,
}

impl PoolHost for Host {
    fn create_share(&self, spec: &PoolSpec) -> Result<(), String> {
        if self.refuse {
            return Err("no such module".into());
        }
        let mut s = self.shares.lock().unwrap();
        if !s.iter().any(|(n, x)| *n == self.me && x == spec) {
            s.push((self.me, spec.clone()));
        }
        Ok(())
    }

    fn lookup(&self, name: &str) -> Option<PoolSpec> {
        let s = self.shares.lock().unwrap();
        s.iter()
            .find(|(n, x)| *n == self.me && x.name == name)
            .map(|(_, x)| x.clone())
    }

    fn destroy_share(&self, id: u64) -> Result<bool, String> {
        let mut s = self.shares.lock().unwrap();
        let before = s.len();
        s.retain(|(n, x)| !(*n == self.me && x.id == id));
        Ok(s.len() < before)
    }

    fn lookup_id(&self, id: u64) -> Option<PoolSpec> {
        let s = self.shares.lock().unwrap();
        s.iter()
            .find(|(n, x)| *n == self.me && x.id == id)
            .map(|(_, x)| x.clone())
    }

    fn cluster_pools(&self) -> Vec<PoolSpec> {
        let s = self.shares.lock().unwrap();
        s.iter()
            .filter(|(n, _)| *n == self.me)
            .map(|(_, x)| x.clone())
            .collect()
    }

    fn free_id(&self) -> u64 {
        let s = self.shares.lock().unwrap();
        s.iter()
            .filter(|(n, _)| *n == self.me)
            .map(|(_, x)| x.id + 1)
            .max()
            .unwrap_or(GLOBAL_POOL_BASE)
    }
}

/// Node `me`, holding its shares in `shares`; a `refuse` node cannot create
/// one.
fn node(me: u32, shares: &Shares, refuse: bool) -> GlobalPools {
    GlobalPools::new(
        me,
        0,
        Duration::from_secs(5),
        Box::new(Host {
            me,
            shares: shares.clone(),
            refuse,
        }),
    )
}

/// Nodes 1 to `n` (node `refuse` cannot create a share) and an empty outbox
/// for each.
/// They have seen each other up and told each other what they hold.
fn cluster(n: u32, shares: &Shares, refuse: Option<u32>) -> (Vec<GlobalPools>, Vec<Outbox>) {
    let mut nodes: Vec<GlobalPools> = (1..=n)
        .map(|me| node(me, shares, refuse == Some(me)))
        .collect();
    let mut outs: Vec<Outbox> = (0..n).map(|_| Outbox::default()).collect();
    let up: Vec<u32> = (1..=n).collect();
    meet(&mut nodes, &mut outs, &up);
    (nodes, outs)
}

/// The nodes `up` see each other (back) up; every record is delivered.
fn meet(nodes: &mut [GlobalPools], outs: &mut [Outbox], up: &[u32]) {
    for &a in up {
        for &b in up.iter().filter(|&&b| b != a) {
            let i = (a - 1) as usize;
            nodes[i].joined(b, up, &mut outs[i]);
        }
    }
    pump(nodes, outs, up);
}

/// The methods of the requests node `n[i]` has queued (taken out).
fn methods(outs: &mut [Outbox], i: usize) -> Vec<MethodId> {
    let mut m = Vec::new();
    for (_, kind, payload) in outs[i].drain() {
        for r in decode_batch(kind, &payload).unwrap() {
            if let Record::Request(q) = Record::decode(r).unwrap() {
                m.push(q.method);
            }
        }
    }
    m
}

/// Delivers every queued record until no node has anything to send.
fn pump(nodes: &mut [GlobalPools], outs: &mut [Outbox], up: &[u32]) {
    loop {
        let mut frames = Vec::new();
        for (i, o) in outs.iter_mut().enumerate() {
            for (to, kind, payload) in o.drain() {
                frames.push((i as u32 + 1, to, kind, payload));
            }
        }
        if frames.is_empty() {
            return;
        }
        for (from, to, kind, payload) in frames {
            let t = (to - 1) as usize;
            for r in decode_batch(kind, &payload).unwrap() {
                match Record::decode(r).unwrap() {
                    Record::Request(q) => assert!(nodes[t].on_request(from, &q, up, &mut outs[t])),
                    Record::Reply(p) => assert!(nodes[t].on_reply(from, &p, &mut outs[t])),
                }
            }
        }
    }
}

fn ask(name: &str, goc: bool) -> PoolAsk {
    PoolAsk {
        module: "m".into(),
        name: name.into(),
        args: String::new(),
        containers: 5,
        get_or_create: goc,
    }
}

fn local() -> (Waiter, Receiver<PoolAnswer>) {
    let (tx, rx) = sync_channel(1);
    (Waiter::Local(tx), rx)
}

/// Node `n[i]` asks for `what` with the nodes `up` up; every record is
/// delivered; the answer.
fn ask_pumped(
    n: &mut [GlobalPools],
    outs: &mut [Outbox],
    i: usize,
    what: PoolAsk,
    up: &[u32],
) -> PoolAnswer {
    let (w, rx) = local();
    n[i].ask(what, w, up, &mut outs[i]);
    pump(n, outs, up);
    rx.try_recv().unwrap()
}

/// Node `n[i]` destroys pool `id` with the nodes `up` up; every record is
/// delivered; the answer.
fn destroy_pumped(
    n: &mut [GlobalPools],
    outs: &mut [Outbox],
    i: usize,
    id: u64,
    up: &[u32],
) -> PoolAnswer {
    let (w, rx) = local();
    n[i].destroy(id, w, up, &mut outs[i]);
    pump(n, outs, up);
    rx.try_recv().unwrap()
}

#[test]
fn an_ask_from_another_node_is_decided_by_the_authority_and_shared_by_all() {
    let shares = Shares::default();
    let (mut n, mut outs) = cluster(3, &shares, None);
    let up = [1, 2, 3];
    let (w, rx) = local();
    n[1].ask(ask("p", false), w, &up, &mut outs[1]);
    assert!(rx.try_recv().is_err(), "answered before the authority");
    pump(&mut n, &mut outs, &up);
    let spec = rx.try_recv().unwrap().unwrap();
    assert_eq!(spec.id, GLOBAL_POOL_BASE);
    assert_eq!(spec.nodes, vec![1, 2, 3, 1, 2]);
    let s = shares.lock().unwrap();
    let mut who: Vec<u32> = s.iter().map(|(n, _)| *n).collect();
    who.sort_unstable();
    assert_eq!(who, vec![1, 2, 3], "every node holds the pool once");
}

#[test]
fn get_or_create_from_two_nodes_at_once_makes_one_pool() {
    let shares = Shares::default();
    let (mut n, mut outs) = cluster(3, &shares, None);
    let up = [1, 2, 3];
    let (w2, rx2) = local();
    let (w3, rx3) = local();
    n[1].ask(ask("p", true), w2, &up, &mut outs[1]);
    n[2].ask(ask("p", true), w3, &up, &mut outs[2]);
    pump(&mut n, &mut outs, &up);
    let (a, b) = (
        rx2.try_recv().unwrap().unwrap(),
        rx3.try_recv().unwrap().unwrap(),
    );
    assert_eq!(a, b);
    // A CreatePool of the name now fails, naming it.
    let (w, rx) = local();
    n[0].ask(ask("p", false), w, &up, &mut outs[0]);
    let e = rx.try_recv().unwrap().unwrap_err();
    assert!(e.contains("'p' is taken"), "{e}");
}

#[test]
fn a_node_that_cannot_create_its_share_fails_the_ask_naming_it() {
    let shares = Shares::default();
    let (mut n, mut outs) = cluster(3, &shares, Some(3));
    let up = [1, 2, 3];
    let e = ask_pumped(&mut n, &mut outs, 1, ask("p", false), &up).unwrap_err();
    assert!(e.contains("node 3") && e.contains("no such module"), "{e}");
    // Rolled back: no node keeps a share, the name is free, the id is not
    // given again.
    assert!(
        shares.lock().unwrap().is_empty(),
        "{:?}",
        shares.lock().unwrap()
    );
    n[2] = node(3, &shares, false);
    assert_eq!(
        ask_pumped(&mut n, &mut outs, 1, ask("p", false), &up)
            .unwrap()
            .id,
        GLOBAL_POOL_BASE + 1
    );
}

/// The nodes holding a share of pool `id`.
fn holders(shares: &Shares, id: u64) -> Vec<u32> {
    let mut v: Vec<u32> = shares
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, x)| x.id == id)
        .map(|(n, _)| *n)
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn a_destroy_from_any_node_drops_every_share_and_its_id_is_not_given_again() {
    let shares = Shares::default();
    let (mut n, mut outs) = cluster(3, &shares, None);
    let up = [1, 2, 3];
    let p = ask_pumped(&mut n, &mut outs, 1, ask("p", false), &up).unwrap();
    assert_eq!(holders(&shares, p.id), vec![1, 2, 3]);
    let (w, rx) = local();
    n[2].destroy(p.id, w, &up, &mut outs[2]);
    assert!(rx.try_recv().is_err(), "answered before the authority");
    pump(&mut n, &mut outs, &up);
    assert_eq!(rx.try_recv().unwrap().unwrap().name, "p");
    assert!(holders(&shares, p.id).is_empty());
    // Again: it is gone.
    let (w, rx) = local();
    n[0].destroy(p.id, w, &up, &mut outs[0]);
    let e = rx.try_recv().unwrap().unwrap_err();
    assert!(e.contains("destroyed already"), "{e}");
    let (w, rx) = local();
    n[0].destroy(p.id + 9, w, &up, &mut outs[0]);
    let e = rx.try_recv().unwrap().unwrap_err();
    assert!(e.contains("no pool"), "{e}");
    // The name is free; the id is not given again, even by a new authority.
    assert_eq!(
        ask_pumped(&mut n, &mut outs, 1, ask("p", false), &[2, 3])
            .unwrap()
            .id,
        p.id + 1
    );
}

#[test]
fn a_node_away_during_a_destroy_drops_its_share_when_it_joins_again() {
    let shares = Shares::default();
    let (mut n, mut outs) = cluster(3, &shares, None);
    let p = ask_pumped(&mut n, &mut outs, 0, ask("p", false), &[1, 2, 3]).unwrap();
    // Node 3 is unreachable: the destroy does not wait for it.
    let up = [1, 2];
    destroy_pumped(&mut n, &mut outs, 1, p.id, &up).unwrap();
    assert_eq!(holders(&shares, p.id), vec![3]);
    // Node 3 is heard from again: nodes 1 and 2 tell it.
    let up = [1, 2, 3];
    n[0].joined(3, &up, &mut outs[0]);
    n[1].joined(3, &up, &mut outs[1]);
    pump(&mut n, &mut outs, &up);
    assert!(holders(&shares, p.id).is_empty());
    // A share of a destroyed id is refused.
    let req = control(CONTROL_IDS + 50, CTL_SHARE, serde_json::to_vec(&p).unwrap());
    let mut out = Outbox::default();
    assert!(n[2].on_request(1, &req, &up, &mut out));
    assert!(holders(&shares, p.id).is_empty());
}

#[test]
fn an_authority_that_goes_down_fails_the_ask_naming_it() {
    let shares = Shares::default();
    let (mut n, _) = cluster(3, &shares, None);
    let mut out = Outbox::default();
    let (w, rx) = local();
    n[1].ask(ask("p", false), w, &[1, 2, 3], &mut out);
    n[1].expire(Instant::now(), &|_| false, &mut out);
    assert!(rx.try_recv().is_err());
    n[1].expire(Instant::now(), &|node| node == 1, &mut out);
    let e = rx.try_recv().unwrap().unwrap_err();
    assert!(e.contains("node 1") && e.contains("went down"), "{e}");
    // And a silent one after the timeout.
    let (w, rx) = local();
    n[1].ask(ask("q", false), w, &[1, 2, 3], &mut out);
    n[1].expire(
        Instant::now() + Duration::from_secs(6),
        &|_| false,
        &mut out,
    );
    let e = rx.try_recv().unwrap().unwrap_err();
    assert!(
        e.contains("did not answer") && e.contains("task_timeout"),
        "{e}"
    );
}

#[test]
fn a_node_down_during_creation_fails_it() {
    let shares = Shares::default();
    let (mut n, mut outs) = cluster(3, &shares, None);
    let (w, rx) = local();
    n[0].ask(ask("p", false), w, &[1, 2, 3], &mut outs[0]);
    let p = GLOBAL_POOL_BASE;
    assert_eq!(holders(&shares, p), vec![1]);
    n[0].expire(Instant::now(), &|node| node == 3, &mut outs[0]);
    // Answered once node 2 (up) has dropped what it made; node 3, down,
    // does not count.
    assert!(rx.try_recv().is_err(), "answered before the rollback");
    let mut first = std::mem::take(&mut outs[0]);
    let to_2: Vec<_> = first.drain().into_iter().filter(|f| f.0 == 2).collect();
    for (_, kind, payload) in to_2 {
        for r in decode_batch(kind, &payload).unwrap() {
            let Record::Request(q) = Record::decode(r).unwrap() else {
                panic!("not a request")
            };
            assert!(n[1].on_request(1, &q, &[1, 2], &mut outs[1]));
        }
    }
    assert!(holders(&shares, p).is_empty(), "rolled back");
    // Node 2's replies: the share's comes too late to count (the creation
    // failed), the drop's ends the rollback.
    for (_, kind, payload) in outs[1].drain() {
        for r in decode_batch(kind, &payload).unwrap() {
            let Record::Reply(q) = Record::decode(r).unwrap() else {
                panic!("not a reply")
            };
            n[0].on_reply(2, &q, &mut outs[0]);
        }
    }
    n[0].expire(Instant::now(), &|node| node == 3, &mut outs[0]);
    let e = rx.try_recv().unwrap().unwrap_err();
    assert!(e.contains("[3]") && e.contains("went down"), "{e}");
}

#[test]
fn malformed_control_bodies_get_an_error_reply() {
    let shares = Shares::default();
    let (mut n, _) = cluster(2, &shares, None);
    let mut out = Outbox::default();
    for method in [CTL_CREATE, CTL_SHARE, CTL_DESTROY, CTL_DROP, CTL_HELD] {
        let req = control(9, method, b"{not json".to_vec());
        assert!(n[1].on_request(1, &req, &[1, 2], &mut out));
    }
    let frames = out.drain();
    assert_eq!(frames.len(), 1);
    let records = decode_batch(frames[0].1, &frames[0].2).unwrap();
    assert_eq!(records.len(), 5);
    for r in records {
        let Record::Reply(p) = Record::decode(r).unwrap() else {
            panic!("not a reply")
        };
        assert_eq!(p.result, FAILED);
        assert!(p.message.starts_with("malformed"), "{}", p.message);
    }
    // A reply to no request of ours is not ours.
    let stray = Reply {
        id: 77,
        result: 0,
        message: String::new(),
        body: Vec::new(),
    };
    assert!(!n[0].on_reply(2, &stray, &mut out));
}

#[test]
fn a_new_authority_knows_the_pools_decided_before_it() {
    let shares = Shares::default();
    let (mut n, mut outs) = cluster(3, &shares, None);
    let first = ask_pumped(&mut n, &mut outs, 2, ask("p", false), &[1, 2, 3]).unwrap();
    // Node 1 is gone: node 2 decides, knowing "p" and its id.
    let up = [2, 3];
    assert_eq!(
        ask_pumped(&mut n, &mut outs, 2, ask("p", true), &up)
            .unwrap()
            .id,
        first.id
    );
    let q = ask_pumped(&mut n, &mut outs, 2, ask("q", false), &up).unwrap();
    assert_eq!(q.id, first.id + 1);
    assert_eq!(q.nodes, vec![2, 3, 2, 3, 2]);
}

#[test]
fn a_node_that_joins_later_is_told_the_pools_and_lost_notices_are_sent_again() {
    let shares = Shares::default();
    let (mut n, mut outs) = cluster(3, &shares, None);
    let p = ask_pumped(&mut n, &mut outs, 1, ask("p", false), &[1, 2]).unwrap();
    assert_eq!(holders(&shares, p.id), vec![1, 2]);
    // Node 3 comes up: node 1 (the lowest other node up) tells it; node 2
    // does not. The first notice is lost (the link was not connected yet).
    let up = [1, 2, 3];
    n[0].joined(3, &up, &mut outs[0]);
    n[1].joined(3, &up, &mut outs[1]);
    // Node 2 only says what it holds: the lowest other node up shares.
    assert_eq!(methods(&mut outs, 1), vec![CTL_HELD]);
    let lost = outs[0].drain();
    assert_eq!(lost.len(), 1);
    n[0].expire(Instant::now(), &|_| false, &mut outs[0]);
    assert!(outs[0].is_empty(), "sent again only after a while");
    n[0].expire(
        Instant::now() + Duration::from_millis(300),
        &|_| false,
        &mut outs[0],
    );
    pump(&mut n, &mut outs, &up);
    assert_eq!(holders(&shares, p.id), vec![1, 2, 3]);
    // Answered: not sent again.
    n[0].expire(
        Instant::now() + Duration::from_secs(1),
        &|_| false,
        &mut outs[0],
    );
    assert!(outs[0].is_empty());
}

#[test]
fn a_restarted_authority_decides_only_once_it_knows_what_the_others_hold() {
    let shares = Shares::default();
    let (mut n, mut outs) = cluster(3, &shares, None);
    let p = ask_pumped(&mut n, &mut outs, 1, ask("p", false), &[1, 2, 3]).unwrap();
    let q = ask_pumped(&mut n, &mut outs, 2, ask("q", false), &[1, 2, 3]).unwrap();
    // Node 1 restarts: it holds nothing and knows no id.
    n[0] = node(1, &shares, false);
    shares.lock().unwrap().retain(|(node, _)| *node != 1);
    let up = [1, 2, 3];
    let (w, r_new) = local();
    n[0].ask(ask("r", false), w, &up, &mut outs[0]);
    let (w, p_again) = local();
    n[0].ask(ask("p", true), w, &up, &mut outs[0]);
    assert!(outs[0].is_empty(), "nothing decided yet");
    assert!(r_new.try_recv().is_err() && p_again.try_recv().is_err());
    // It meets the others: they tell it what they hold, and it decides.
    meet(&mut n, &mut outs, &up);
    let r = r_new.try_recv().unwrap().unwrap();
    assert_eq!(r.id, q.id + 1, "an id past every pool the others hold");
    assert_eq!(p_again.try_recv().unwrap().unwrap(), p);
    // No pool of the others was touched.
    assert_eq!(holders(&shares, p.id), vec![1, 2, 3]);
    assert_eq!(holders(&shares, q.id), vec![1, 2, 3]);
    assert_eq!(holders(&shares, r.id), vec![1, 2, 3]);
}

#[test]
fn an_ask_waiting_for_silent_nodes_fails_after_the_timeout_naming_them() {
    let shares = Shares::default();
    let mut one = node(1, &shares, false);
    let mut out = Outbox::default();
    let up = [1, 2];
    let (w, rx) = local();
    one.ask(ask("p", false), w, &up, &mut out);
    assert!(one.busy(), "the peer thread keeps checking");
    one.retry_deferred(Instant::now(), &up, &mut out);
    assert!(rx.try_recv().is_err());
    // Node 2 went down meanwhile: decided without it.
    one.retry_deferred(Instant::now(), &[1], &mut out);
    assert_eq!(rx.try_recv().unwrap().unwrap().nodes, vec![1; 5]);
    let (w, rx) = local();
    one.ask(ask("q", false), w, &up, &mut out);
    one.retry_deferred(Instant::now() + Duration::from_secs(6), &up, &mut out);
    let e = rx.try_recv().unwrap().unwrap_err();
    assert!(
        e.contains("node(s) [2]") && e.contains("task_timeout"),
        "{e}"
    );
}

#[test]
fn an_authority_waits_for_the_nodes_it_has_not_heard_from_until_the_grace_ends() {
    let shares = Shares::default();
    let mut one = node(1, &shares, false);
    let mut out = Outbox::default();
    // Node 1 has just started: nodes 2 and 3 have not been heard from.
    one.unheard(&[2, 3]);
    let (w, rx) = local();
    one.ask(ask("p", false), w, &[1], &mut out);
    one.retry_deferred(Instant::now() + Duration::from_secs(60), &[1], &mut out);
    assert!(rx.try_recv().is_err(), "waits while the grace lasts");
    // The grace ended without a word from them: decided without them.
    one.unheard(&[]);
    one.retry_deferred(Instant::now(), &[1], &mut out);
    assert_eq!(rx.try_recv().unwrap().unwrap().nodes, vec![1; 5]);
}

#[test]
fn asks_that_waited_go_to_the_authority_that_came_up_meanwhile() {
    let shares = Shares::default();
    let mut n = vec![node(1, &shares, false), node(2, &shares, false)];
    let mut outs = vec![Outbox::default(), Outbox::default()];
    // Both started alone, each waiting for the other: each its own
    // authority, each keeps an ask for the same name.
    n[0].unheard(&[2]);
    n[1].unheard(&[1]);
    let (w1, rx1) = local();
    n[0].ask(ask("p", false), w1, &[1], &mut outs[0]);
    let (w2, rx2) = local();
    n[1].ask(ask("p", false), w2, &[2], &mut outs[1]);
    assert!(rx1.try_recv().is_err() && rx2.try_recv().is_err());
    // They meet: node 1 is the authority and decides both.
    meet(&mut n, &mut outs, &[1, 2]);
    let (a1, a2) = (rx1.try_recv().unwrap(), rx2.try_recv().unwrap());
    assert_eq!(a1.unwrap().nodes, vec![1, 2, 1, 2, 1]);
    let e = a2.unwrap_err();
    assert!(e.contains("is taken"), "{e}");
    assert_eq!(holders(&shares, GLOBAL_POOL_BASE), vec![1, 2]);
}

#[test]
fn an_authority_is_synced_by_the_reply_to_its_own_notice() {
    let shares = Shares::default();
    let mut n = vec![node(1, &shares, false), node(2, &shares, false)];
    let mut outs = vec![Outbox::default(), Outbox::default()];
    let up = [1, 2];
    // Node 2 made a pool alone before; node 1 sees node 2 up, but node 2
    // never saw node 1 come up (it was not down to it): node 2's reply
    // tells node 1 what it holds.
    let old = PoolSpec {
        id: GLOBAL_POOL_BASE + 7,
        module: "m".into(),
        name: "old".into(),
        args: String::new(),
        nodes: vec![2],
    };
    shares.lock().unwrap().push((2, old.clone()));
    n[0].joined(2, &up, &mut outs[0]);
    pump(&mut n, &mut outs, &up);
    let p = ask_pumped(&mut n, &mut outs, 0, ask("p", false), &up).unwrap();
    assert_eq!(p.id, old.id + 1);
    assert_eq!(
        ask_pumped(&mut n, &mut outs, 0, ask("old", true), &up).unwrap(),
        old
    );
}

mod ids;

mod peer_input;
