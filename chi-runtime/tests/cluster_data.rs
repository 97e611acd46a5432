//! Modules whose tasks carry client data, run on another node: three real
//! runtimes on 127.0.0.1, .2 and .3, a compress pool and a bdev pool over
//! the cluster (container g on node g % 3 + 1).
//!
//! * compress: 1 MiB of text from a client of node 1 is compressed by the
//!   container on node 2 and the frame decompressed by the one on node 3
//!   (from a client of node 2); the bytes go out with the request and the
//!   frame comes back with the reply, into the sender's client-data segment.
//!   The remote node's task count shows it ran the task.
//! * bdev: blocks of the device on node 2 written from node 1 (a buffer the
//!   task owns, and one the caller keeps) and read back from node 3 (into a
//!   new buffer), into a block the caller keeps, and into a buffer too small
//!   (which grows); node 1's own device does not hold them.
//! * Afterwards every node's main and client-data segments hold as many
//!   live blocks as before the remote tasks: nothing leaked on the sender or
//!   on the node that ran them.
//! * Data too large for a peer frame (16 MiB): a task whose inputs are
//!   larger fails on its own node, never sent, one whose outputs are
//!   larger fails on the node that ran it, each saying so (not a timeout);
//!   both nodes go on serving.
//! * At rest after remote work, every peer thread and worker sleeps: none
//!   is seen running in half of 50 looks at its state.

mod support;

use std::time::Duration;

use chi_sdk::admin::{AdminClient, PoolParams};
use chi_sdk::bytes::ClientBuf;
use chi_sdk::client::Client;
use chi_sdk::queue::Priority;
use chi_sdk::types::DomainQuery;
use chimaera_bdev_runtime::{BdevClient, ReadTask};
use chimaera_compress_runtime::{CODEC_POOL_DEFAULT, CompressClient, frame};
use support::cluster::{ClusterSetup, Node};
use support::{Watchdog, assert_no_process_left};

const LIMIT: Duration = Duration::from_secs(20);

/// Tasks node `k` has completed.
fn completed(setup: &ClusterSetup, k: u32) -> u64 {
    setup.status(k).tasks_completed
}

/// Text that compresses well.
fn text(n: usize) -> Vec<u8> {
    let words = [
        "pool ",
        "container ",
        "task ",
        "node ",
        "lane ",
        "worker ",
        "queue ",
    ];
    let mut out = Vec::with_capacity(n);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
    }
    out.truncate(n);
    out
}

#[test]
fn compress_and_bdev_run_on_a_remote_node_with_their_data() {
    let _w = Watchdog::new("cluster_data", Duration::from_secs(120));
    let setup = ClusterSetup::with_modules("cdata", 3);
    let nodes = setup.start_all(LIMIT);
    let clients = setup.clients();
    let admin = AdminClient::new(&clients[0]);
    let zip_pool = admin
        .create_cluster_pool("chimaera_compress", "zip", "", 3)
        .expect("a compress pool over the cluster");
    let bdev_args = chimaera_bdev_runtime::CreateParams::default()
        .to_args()
        .expect("bdev parameters");
    let dev_pool = admin
        .create_cluster_pool("chimaera_bdev", "dev", &bdev_args, 3)
        .expect("a bdev pool over the cluster");
    let zip = |g: u32| CompressClient::from(zip_pool).with_query(DomainQuery::global_id(g));
    let dev = |g: u32| BdevClient::from(dev_pool).with_query(DomainQuery::global_id(g));

    // One remote task of each kind first, so that what a first task sets
    // up for good is not counted as a leak below.
    zip(1)
        .compress(&clients[0], b"warm", CODEC_POOL_DEFAULT)
        .expect("a first remote compress");
    dev(1)
        .get_stats(&clients[0])
        .expect("a first remote GetStats");
    let before: Vec<(u64, u64)> = (1..=3).map(|k| setup.live_blocks(k)).collect();

    // compress: node 1's bytes compressed on node 2, the frame decompressed
    // on node 3 by a client of node 2.
    let data = text(1 << 20);
    let ran_on_2 = completed(&setup, 2);
    let (f, _) = zip(1)
        .compress(&clients[0], &data, CODEC_POOL_DEFAULT)
        .expect("compress on node 2");
    assert!(completed(&setup, 2) > ran_on_2, "node 2 ran no task");
    let h = frame::header(&f).expect("a frame");
    assert_eq!(h.original_len, data.len() as u64);
    assert!(f.len() < data.len() / 2, "{} bytes", f.len());
    assert!(frame::decode(&f).expect("decode here") == data);
    let ran_on_3 = completed(&setup, 3);
    let back = zip(2)
        .decompress(&clients[1], &f)
        .expect("decompress on node 3");
    assert!(completed(&setup, 3) > ran_on_3, "node 3 ran no task");
    assert!(
        back == data,
        "the round trip over two nodes changed the data"
    );
    // A module error on the remote node comes back as this node's error.
    let e = zip(2)
        .decompress(&clients[0], &f[..f.len() / 2])
        .unwrap_err()
        .to_string();
    assert!(!e.is_empty(), "a truncated frame is refused");

    // bdev: the device on node 2, written from node 1 and read from node 3.
    let bs = 4096usize;
    let offs = dev(1)
        .allocate_blocks(&clients[0], 4)
        .expect("blocks on node 2");
    let pattern =
        |i: usize| -> Vec<u8> { (0..bs).map(|b| ((b * 7 + i * 13) % 256) as u8).collect() };
    for (i, &o) in offs.iter().enumerate().take(3) {
        assert_eq!(
            dev(1)
                .write(&clients[0], o, &pattern(i))
                .expect("remote write"),
            bs as u64
        );
    }
    // A buffer the caller keeps, written out and read back into.
    let kept = clients[0].allocate_buffer(bs).expect("a kept block");
    // SAFETY: a block of `bs` bytes this test owns, in a mapped segment.
    unsafe { std::ptr::copy_nonoverlapping(pattern(3).as_ptr(), kept.as_ptr(), bs) };
    assert_eq!(
        dev(1)
            .write_buffer(&clients[0], offs[3], kept.shm(), bs as u64)
            .expect("remote write of a kept block"),
        bs as u64
    );
    for (i, &o) in offs.iter().enumerate() {
        assert!(
            dev(1).read(&clients[2], o, bs).expect("remote read") == pattern(i),
            "block {i} read from node 3"
        );
    }
    // SAFETY: as above.
    unsafe { std::ptr::write_bytes(kept.as_ptr(), 0, bs) };
    assert_eq!(
        dev(1)
            .read_buffer(&clients[0], offs[0], kept.shm(), bs as u64)
            .expect("remote read into a kept block"),
        bs as u64
    );
    // SAFETY: as above; the read completed.
    let got = unsafe { std::slice::from_raw_parts(kept.as_ptr(), bs) };
    assert!(got == pattern(0), "the kept block holds what node 2 read");
    clients[0]
        .free_buffer(kept.shm())
        .expect("free the kept block");
    // A buffer too small for what was read grows on node 2; here the task
    // gets a new block and its old one is freed (counted below).
    let small = ClientBuf::with_capacity(&clients[0], 16).expect("a small buffer");
    let t = ReadTask::new(
        dev_pool,
        DomainQuery::global_id(1),
        offs[1],
        bs as u64,
        small,
    );
    let got = clients[0]
        .submit(t, Priority::LowLatency)
        .expect("submit a read")
        .wait_bytes(|t| &t.data)
        .expect("a read into a buffer too small");
    assert!(got == pattern(1), "the grown buffer holds block 1");
    let stats = dev(1).get_stats(&clients[1]).expect("node 2's stats");
    assert_eq!(stats.bytes_written, 4 * bs as u64);
    // Node 1's own device holds none of it.
    let local = dev(0).get_stats(&clients[0]).expect("node 1's stats");
    assert_eq!(local.bytes_written, 0);

    // Nothing leaked, on the senders or where the tasks ran.
    for k in 1..=3u32 {
        let want = before[k as usize - 1];
        let t0 = std::time::Instant::now();
        let mut now = setup.live_blocks(k);
        while now != want && t0.elapsed() < LIMIT {
            std::thread::sleep(Duration::from_millis(50));
            now = setup.live_blocks(k);
        }
        assert_eq!(now, want, "node {k}'s (main, client-data) live blocks");
    }
    drop(clients);
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}

/// The two nodes of `setup` started, a client of each, and a compress pool
/// over them: the client of its container 1, on node 2.
fn two_nodes_zip(setup: &ClusterSetup) -> (Vec<Node>, Vec<Client>, CompressClient) {
    let nodes = setup.start_all(LIMIT);
    let clients = setup.clients();
    let zip_pool = AdminClient::new(&clients[0])
        .create_cluster_pool("chimaera_compress", "zip", "", 2)
        .expect("a compress pool over the cluster");
    let on_2 = CompressClient::from(zip_pool).with_query(DomainQuery::global_id(1));
    (nodes, clients, on_2)
}

#[test]
fn data_too_large_for_a_peer_frame_fails_at_once_saying_so() {
    let _w = Watchdog::new("cluster_data_large", Duration::from_secs(120));
    let setup = ClusterSetup::with_modules("cdbig", 2).with_client_data("96m");
    let (nodes, clients, on_2) = two_nodes_zip(&setup);
    let big = text(17 << 20);
    // Inputs over the limit: refused on node 1, never sent.
    let ran_on_2 = completed(&setup, 2);
    let e = on_2
        .compress(&clients[0], &big, CODEC_POOL_DEFAULT)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bytes a task carries to another node") && e.contains("node 2"),
        "{e}"
    );
    // Outputs over the limit: a small frame that decompresses to 17 MiB
    // runs on node 2, whose reply says why it carries no data.
    let f = frame::encode(&big, chimaera_compress_runtime::Codec::Lz4, 0);
    assert!(f.len() < 12 << 20, "{} bytes", f.len());
    let e = on_2.decompress(&clients[0], &f).unwrap_err().to_string();
    assert!(
        e.contains("bytes a task carries back from another node"),
        "{e}"
    );
    assert!(completed(&setup, 2) > ran_on_2, "node 2 ran no task");
    // Both go on serving.
    let small = text(1000);
    let (f, _) = on_2
        .compress(&clients[0], &small, CODEC_POOL_DEFAULT)
        .expect("a small remote compress afterwards");
    assert!(on_2.decompress(&clients[1], &f).expect("and back") == small);
    drop(clients);
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}

/// For each thread of process `pid` whose name starts with one of
/// `prefixes`: in how many of `samples` looks (2 ms apart) it was running
/// or runnable (`R` in `/proc/<pid>/task/<tid>/stat`).
fn running_counts(pid: u32, prefixes: &[&str], samples: u32) -> Vec<(String, u32)> {
    let tasks = format!("/proc/{pid}/task");
    let threads: Vec<(String, String)> = std::fs::read_dir(&tasks)
        .expect("the runtime's threads")
        .filter_map(|e| {
            let tid = e.ok()?.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(format!("{tasks}/{tid}/comm")).ok()?;
            let comm = comm.trim().to_owned();
            prefixes
                .iter()
                .any(|p| comm.starts_with(p))
                .then_some((tid, comm))
        })
        .collect();
    let mut counts = vec![0u32; threads.len()];
    for _ in 0..samples {
        for (i, (tid, _)) in threads.iter().enumerate() {
            let stat = std::fs::read_to_string(format!("{tasks}/{tid}/stat")).unwrap_or_default();
            if stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('R'))
            {
                counts[i] += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    threads.into_iter().map(|(_, c)| c).zip(counts).collect()
}

#[test]
fn a_cluster_at_rest_after_remote_work_sleeps() {
    // The workers poll for a short window after remote work (reading the
    // peer socket meanwhile), then sleep and give the socket back to the
    // peer threads: none keeps a CPU once the work has stopped.
    let _w = Watchdog::new("cluster_data_rest", Duration::from_secs(120));
    let setup = ClusterSetup::with_modules("cdrest", 2);
    let (nodes, clients, on_2) = two_nodes_zip(&setup);
    let data = text(256);
    for _ in 0..300 {
        on_2.compress(&clients[0], &data, CODEC_POOL_DEFAULT)
            .expect("a remote compress");
    }
    std::thread::sleep(Duration::from_millis(300));
    let samples = 50;
    for n in &nodes {
        let counts = running_counts(n.pid, &["chi-peers", "chi-worker"], samples);
        assert!(counts.iter().any(|(c, _)| c == "chi-peers"), "{counts:?}");
        for (thread, running) in counts {
            assert!(
                running < samples / 2,
                "node {}'s thread {thread} was running in {running} of {samples} looks at rest",
                n.k
            );
        }
    }
    drop(clients);
    drop(nodes);
    assert_no_process_left(setup.dir.path(), &[]);
}
