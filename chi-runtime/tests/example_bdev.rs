//! The `bdev` example module (`libchimaera_bdev_runtime.so`) in a real runtime,
//! on both backends: blocks allocated, written with patterns and read back,
//! freed and allocated again; the stats; many I/Os in flight (and two writes to
//! one block applied in order); and every kind of bad request — offsets and
//! sizes outside the device, I/O on free blocks, bad buffer pointers, double
//! and malformed frees, bad parameters — refused with a clear error while the
//! runtime keeps serving. The file backend's file lives in a scratch directory
//! removed afterwards; it is removed with the pool unless kept.
//!
//! The test builds the module libraries itself (see `support::modules`).

mod support;

use bdev::{AllocateBlocksTask, Backend, BdevClient, CreateParams, bdev_code};
use chi_sdk::client::{CallError, Client, TaskError};
use chi_sdk::queue::Priority;
use chi_sdk::shm::{SegmentId, ShmPtr};
use chi_sdk::task::code;
use chi_sdk::types::DomainQuery;
use chimaera_bdev_runtime as bdev;
use support::modules::module_setup;
use support::*;

const BS: u64 = 4096;
/// 8 MiB: room for a 1 MiB transfer (four chunks) and the smaller tests.
const CAPACITY: u64 = 8 << 20;

/// The call failed with `want`; returns its message.
fn task_err<T: std::fmt::Debug>(r: Result<T, CallError>, want: i32, what: &str) -> String {
    match r {
        Err(CallError::Task(TaskError { code, message })) if code == want => message,
        other => panic!("{what}: expected a task error with code {want}, got {other:?}"),
    }
}

/// `len` bytes of a pattern that differs with `seed`.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn generated_constants() {
    assert_eq!(bdev::CHIMOD_LIB_NAME, "chimaera_bdev");
    assert_eq!(bdev::method::ALLOCATE_BLOCKS, 10);
    assert_eq!(bdev::method::FREE_BLOCKS, 11);
    assert_eq!(bdev::method::WRITE, 12);
    assert_eq!(bdev::method::READ, 13);
    assert_eq!(bdev::method::GET_STATS, 14);
    assert_eq!(
        <CreateParams as chi_sdk::admin::PoolParams>::CHIMOD_LIB_NAME,
        "chimaera_bdev"
    );
}

#[test]
fn ram_backend_serves_every_method() {
    let _wd = Watchdog::new("bdev_ram_backend", WATCHDOG);
    let s = module_setup("bdev_ram");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let dev = BdevClient::create(&client, "ram_dev", &CreateParams::ram(CAPACITY))
        .expect("create a RAM device");
    exercise(&client, dev, false);
    dev.destroy(&client).expect("destroy the pool");
    drop(client);
    let log = rt.stop();
    assert!(log.contains("bdev container created"), "{log}");
}

#[test]
fn file_backend_serves_every_method_and_removes_its_file() {
    let _wd = Watchdog::new("bdev_file_backend", WATCHDOG);
    let s = module_setup("bdev_file");
    let data = Scratch::new("bdev_file_data");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");

    let path = data.path().join("device.img");
    let dev = BdevClient::create(&client, "file_dev", &CreateParams::file(&path, CAPACITY))
        .expect("create a file device");
    let meta = std::fs::metadata(&path).expect("the backing file exists");
    assert_eq!(meta.len(), CAPACITY, "the file is sized to the capacity");
    exercise(&client, dev, true);

    // The bytes are really in the file: write a block, find it there.
    let off = dev.allocate_blocks(&client, 1).expect("allocate")[0];
    let block = pattern(4242, BS as usize);
    dev.write(&client, off, &block).expect("write");
    let on_disk = std::fs::read(&path).expect("read the backing file");
    assert_eq!(&on_disk[off as usize..(off + BS) as usize], &block[..]);

    // Destroying the pool drops the container once no worker refers to it
    // any more (at the latest when the runtime stops), which removes the
    // file: checked after the stop below.
    dev.destroy(&client).expect("destroy");
    assert!(dev.get_stats(&client).is_err(), "the pool is gone");

    // keep = true: the file outlives the pool.
    let kept = data.path().join("kept.img");
    let params = CreateParams {
        backend: Backend::File {
            path: kept.clone(),
            keep: true,
        },
        capacity: 1 << 20,
        ..CreateParams::default()
    };
    let dev2 = BdevClient::create(&client, "kept_dev", &params).expect("create");
    let kept_off = dev2.allocate_blocks(&client, 1).expect("allocate")[0];
    dev2.write(&client, kept_off, b"persisted").expect("write");
    dev2.destroy(&client).expect("destroy");

    // A path the runtime cannot create fails the pool's creation, naming it.
    let bad = data.path().join("no/such/dir/dev.img");
    let e = BdevClient::create(&client, "bad_file", &CreateParams::file(&bad, 1 << 20))
        .expect_err("a file in a missing directory");
    assert!(
        e.to_string().contains("cannot open the backing file")
            && e.to_string().contains("no/such/dir"),
        "{e}"
    );

    drop(client);
    let log = rt.stop();
    assert!(log.contains("bdev container created"), "{log}");
    assert!(
        !path.exists(),
        "the destroyed pool's file is removed:\n{log}"
    );
    assert!(log.contains("bdev: backing file kept"), "{log}");
    let bytes = std::fs::read(&kept).expect("the kept file is still there");
    assert_eq!(bytes.len(), 1 << 20);
    let at = kept_off as usize;
    assert_eq!(&bytes[at..at + 9], b"persisted");
    drop(data);
    assert!(!kept.exists(), "the scratch directory is removed");
}

#[test]
fn bad_parameters_fail_the_pool_creation() {
    let _wd = Watchdog::new("bdev_bad_parameters", WATCHDOG);
    let s = module_setup("bdev_bad_params");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let cases: [(CreateParams, &str); 4] = [
        (
            CreateParams {
                block_size: 3000,
                ..CreateParams::default()
            },
            "block_size 3000 is not a power of two",
        ),
        (
            CreateParams::ram(4097),
            "capacity 4097 is not a non-zero multiple",
        ),
        (
            CreateParams::ram(0),
            "capacity 0 is not a non-zero multiple",
        ),
        (
            CreateParams {
                io_lanes: 0,
                ..CreateParams::default()
            },
            "io_lanes 0",
        ),
    ];
    for (i, (params, want)) in cases.iter().enumerate() {
        let e = BdevClient::create(&client, &format!("bad{i}"), params)
            .expect_err("bad parameters must fail");
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
    // The runtime still creates good pools.
    let dev = BdevClient::create(&client, "good", &CreateParams::ram(1 << 20)).expect("create");
    assert_eq!(dev.get_stats(&client).expect("stats").total_blocks, 256);
    drop(client);
    rt.stop();
}

/// Every method on `dev`, a fresh device of [`CAPACITY`] bytes.
fn exercise(client: &Client, dev: BdevClient, file: bool) {
    let st = dev.get_stats(client).expect("GetStats");
    assert_eq!(st.capacity, CAPACITY);
    assert_eq!(st.block_size, BS);
    assert_eq!(st.total_blocks, CAPACITY / BS);
    assert_eq!((st.used_blocks, st.free_blocks), (0, CAPACITY / BS));
    assert_eq!(st.file_backend, file);
    // Failed calls made below, to check the failure counter.
    let mut failures = 0;

    // Allocate, write a pattern per block, read it back.
    let blocks = dev.allocate_blocks(client, 8).expect("AllocateBlocks");
    assert_eq!(blocks.len(), 8);
    let mut sorted = blocks.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 8, "distinct blocks: {blocks:?}");
    assert!(
        blocks.iter().all(|&o| o % BS == 0 && o < CAPACITY),
        "{blocks:?}"
    );
    for (i, &off) in blocks.iter().enumerate() {
        let n = dev
            .write(client, off, &pattern(i as u64, BS as usize))
            .expect("Write");
        assert_eq!(n, BS);
    }
    for (i, &off) in blocks.iter().enumerate() {
        let got = dev.read(client, off, BS as usize).expect("Read");
        assert_eq!(got, pattern(i as u64, BS as usize), "block {i} at {off}");
    }
    // Partial and unaligned I/O inside allocated blocks.
    dev.write(client, blocks[3] + 100, b"hello, block")
        .expect("unaligned write");
    let got = dev
        .read(client, blocks[3] + 96, 20)
        .expect("unaligned read");
    let mut want = pattern(3, BS as usize)[96..116].to_vec();
    want[4..16].copy_from_slice(b"hello, block");
    assert_eq!(got, want);
    // Zero bytes are a valid (empty) transfer.
    assert_eq!(dev.write(client, blocks[0], &[]).expect("empty write"), 0);
    assert!(
        dev.read(client, blocks[0], 0)
            .expect("empty read")
            .is_empty()
    );

    // A contiguous extent: a multi-block transfer, and one larger than a chunk
    // (the handler yields between chunks).
    let ext = dev
        .allocate_extent(client, (1 << 20) + 100)
        .expect("AllocateBlocks contiguous");
    assert_eq!(ext % BS, 0);
    let big = pattern(99, (1 << 20) + 100);
    assert_eq!(
        dev.write(client, ext, &big).expect("big write"),
        big.len() as u64
    );
    assert_eq!(dev.read(client, ext, big.len()).expect("big read"), big);
    let mid = dev.read(client, ext + 5000, 70_000).expect("mid read");
    assert_eq!(mid, big[5000..75_000]);
    // By bytes: 3 blocks for 2 blocks and a byte.
    let by_bytes = dev.allocate_bytes(client, 2 * BS + 1).expect("by bytes");
    assert_eq!(by_bytes.len(), 3);

    let st = dev.get_stats(client).expect("GetStats");
    let ext_blocks = ((1 << 20) + 100u64).div_ceil(BS);
    assert_eq!(st.used_blocks, 8 + ext_blocks + 3);
    assert_eq!(st.free_blocks, st.total_blocks - st.used_blocks);
    assert_eq!(st.writes, 8 + 1 + 1 + 1);
    assert_eq!(st.reads, 8 + 1 + 1 + 1 + 1);
    assert_eq!(st.bytes_written, 8 * BS + 12 + big.len() as u64);
    assert_eq!(st.bytes_read, 8 * BS + 20 + big.len() as u64 + 70_000);
    assert_eq!(st.allocations, 3);
    assert_eq!(st.failures, 0);

    // Free, double free refused, reallocate.
    assert_eq!(
        dev.free_blocks(client, &blocks[..4]).expect("FreeBlocks"),
        4
    );
    let msg = task_err(
        dev.free_blocks(client, &blocks[..1]),
        bdev_code::NOT_ALLOCATED,
        "double free",
    );
    assert!(msg.contains("not allocated"), "{msg}");
    failures += 1;
    // A list with a freed block frees nothing, not even its allocated ones.
    let msg = task_err(
        dev.free_blocks(client, &[blocks[5], blocks[2]]),
        bdev_code::NOT_ALLOCATED,
        "free with a freed block",
    );
    assert!(msg.contains(&format!("offset {}", blocks[2])), "{msg}");
    failures += 1;
    let msg = task_err(
        dev.free_blocks(client, &[blocks[5], blocks[5]]),
        bdev_code::BAD_ARGUMENT,
        "a block listed twice",
    );
    assert!(msg.contains("listed twice"), "{msg}");
    failures += 1;
    let msg = task_err(
        dev.free_blocks(client, &[blocks[5] + 1]),
        bdev_code::BAD_ARGUMENT,
        "misaligned free",
    );
    assert!(msg.contains("not a multiple of the block size"), "{msg}");
    failures += 1;
    let msg = task_err(
        dev.free_blocks(client, &[CAPACITY]),
        bdev_code::OUT_OF_RANGE,
        "free past the end",
    );
    assert!(msg.contains("past the end"), "{msg}");
    failures += 1;
    // blocks[5] is still allocated and holds its data.
    assert_eq!(
        dev.read(client, blocks[5], BS as usize).expect("Read"),
        pattern(5, BS as usize)
    );
    // I/O on a freed block is refused.
    let msg = task_err(
        dev.write(client, blocks[0], b"use after free"),
        bdev_code::NOT_ALLOCATED,
        "write to a freed block",
    );
    assert!(msg.contains("not allocated"), "{msg}");
    failures += 1;
    let st = dev.get_stats(client).expect("GetStats");
    assert_eq!(st.used_blocks, 4 + ext_blocks + 3);
    assert_eq!(st.frees, 1);
    // The freed blocks come back (next-fit: after the rest of the device).
    let again = dev
        .allocate_blocks(client, st.free_blocks)
        .expect("allocate every free block");
    for b in &blocks[..4] {
        assert!(again.contains(b), "{b} reallocated");
    }
    let msg = task_err(
        dev.allocate_blocks(client, 1),
        bdev_code::NO_SPACE,
        "a full device",
    );
    assert!(msg.contains("no room for 1 blocks"), "{msg}");
    failures += 1;
    dev.write(client, blocks[0], b"reallocated")
        .expect("write again");
    assert_eq!(
        dev.read(client, blocks[0], 11).expect("read again"),
        b"reallocated"
    );
    assert_eq!(
        dev.free_blocks(client, &again).expect("free them again"),
        again.len() as u64
    );

    // Many I/Os in flight: 32 blocks, each written twice (the second write
    // must win: writes to one block run on one lane, in order), then read.
    let blocks = dev.allocate_blocks(client, 32).expect("allocate 32");
    let writes: Vec<_> = blocks
        .iter()
        .enumerate()
        .flat_map(|(i, &off)| {
            [
                dev.async_write(client, off, &pattern(1000 + i as u64, BS as usize))
                    .expect("submit first write"),
                dev.async_write(client, off, &pattern(2000 + i as u64, BS as usize))
                    .expect("submit second write"),
            ]
        })
        .collect();
    for w in writes {
        assert_eq!(w.wait_with(|t| t.written).expect("async Write"), BS);
    }
    let reads: Vec<_> = blocks
        .iter()
        .map(|&off| {
            dev.async_read(client, off, BS as usize)
                .expect("submit read")
        })
        .collect();
    for (i, r) in reads.into_iter().enumerate() {
        assert_eq!(
            r.wait_bytes(|t| &t.data).expect("async Read"),
            pattern(2000 + i as u64, BS as usize),
            "block {i}: the second write wins"
        );
    }
    // Buffers the caller manages, reused across calls.
    let buf = client.allocate_buffer(BS as usize).expect("buffer");
    for (i, &off) in blocks.iter().enumerate().take(4) {
        assert_eq!(
            dev.read_buffer(client, off, buf.shm(), BS).expect("Read"),
            BS
        );
        // SAFETY: the read completed; the buffer is ours and holds BS bytes.
        let got = unsafe { std::slice::from_raw_parts(buf.as_ptr(), BS as usize) };
        assert_eq!(got, &pattern(2000 + i as u64, BS as usize)[..]);
    }

    // Bad ranges.
    let msg = task_err(
        dev.write(client, CAPACITY, b"x"),
        bdev_code::OUT_OF_RANGE,
        "write at the capacity",
    );
    assert!(msg.contains("runs past the end of the device"), "{msg}");
    failures += 1;
    let msg = task_err(
        dev.read(client, CAPACITY - 10, 11),
        bdev_code::OUT_OF_RANGE,
        "read across the end",
    );
    assert!(msg.contains("runs past the end of the device"), "{msg}");
    failures += 1;
    task_err(
        dev.write_buffer(client, u64::MAX - 10, buf.shm(), 100),
        bdev_code::OUT_OF_RANGE,
        "an offset that overflows",
    );
    failures += 1;
    task_err(
        dev.read_buffer(client, 0, buf.shm(), u64::MAX),
        bdev_code::OUT_OF_RANGE,
        "a huge length",
    );
    failures += 1;

    // Bad buffers: each refused, naming what is wrong.
    let off = blocks[0];
    let bad_buffers: [(ShmPtr, u64, &str); 6] = [
        (ShmPtr::NULL, BS, "null"),
        (
            client.main_allocator().allocate(64).expect("main").shm(),
            64,
            "not in the client-data segment",
        ),
        (
            ShmPtr::new(SegmentId(200), 4096),
            16,
            "not in the client-data segment",
        ),
        (
            ShmPtr::from_bits(u64::MAX),
            16,
            "not in the client-data segment",
        ),
        (
            buf.shm().byte_add(16).expect("inside"),
            16,
            "not the start of a live client-data block",
        ),
        (buf.shm(), 2 * BS, "runs past the end of the block"),
    ];
    for (ptr, len, want) in bad_buffers {
        let msg = task_err(
            dev.write_buffer(client, off, ptr, len),
            bdev_code::BAD_BUFFER,
            want,
        );
        assert!(msg.contains(want), "write from {ptr}: {msg}");
        let msg = task_err(
            dev.read_buffer(client, off, ptr, len),
            bdev_code::BAD_BUFFER,
            want,
        );
        assert!(msg.contains(want), "read into {ptr}: {msg}");
        failures += 2;
    }
    // A garbage offset inside the client-data segment (allocator metadata).
    let meta = ShmPtr::new(buf.shm().segment(), 256);
    let msg = task_err(
        dev.read_buffer(client, off, meta, 16),
        bdev_code::BAD_BUFFER,
        "allocator metadata",
    );
    assert!(msg.contains("not the start of a live"), "{msg}");
    failures += 1;
    // A freed buffer.
    client.free_buffer(buf.shm()).expect("free the buffer");
    let msg = task_err(
        dev.read_buffer(client, off, buf.shm(), 16),
        bdev_code::BAD_BUFFER,
        "a freed buffer",
    );
    assert!(msg.contains("not the start of a live"), "{msg}");
    failures += 1;

    // Bad allocation requests.
    task_err(
        dev.allocate_blocks(client, 0),
        bdev_code::BAD_ARGUMENT,
        "zero blocks",
    );
    task_err(
        dev.allocate_blocks(client, u64::MAX),
        bdev_code::NO_SPACE,
        "u64::MAX blocks",
    );
    task_err(
        dev.allocate_extent(client, CAPACITY),
        bdev_code::NO_SPACE,
        "a run larger than what is free",
    );
    let both = dev
        .async_allocate_blocks(client, 1, 4096, false)
        .expect("submit")
        .wait_with(|_| ());
    let msg = task_err(both, bdev_code::BAD_ARGUMENT, "blocks and bytes");
    assert!(msg.contains("give one of them"), "{msg}");
    let flag = client
        .submit(
            AllocateBlocksTask::new(dev.pool, DomainQuery::local(), 1, 0, 7),
            Priority::LowLatency,
        )
        .expect("submit")
        .wait_with(|_| ());
    let msg = task_err(flag, bdev_code::BAD_ARGUMENT, "contiguous = 7");
    assert!(msg.contains("contiguous is 7"), "{msg}");
    failures += 5;
    // Unknown methods are still the runtime's error.
    let mut t = AllocateBlocksTask::new(dev.pool, DomainQuery::local(), 1, 0, 0);
    t.header.method = 2;
    let msg = task_err(
        client
            .submit(t, Priority::LowLatency)
            .expect("submit")
            .wait_with(|_| ()),
        code::UNSUPPORTED_METHOD,
        "kNodeFailure",
    );
    assert!(msg.contains("kNodeFailure"), "{msg}");

    // After all that the device still serves, with its data intact.
    for (i, &off) in blocks.iter().enumerate() {
        assert_eq!(
            dev.read(client, off, BS as usize)
                .expect("Read after errors"),
            pattern(2000 + i as u64, BS as usize)
        );
    }
    let st = dev.get_stats(client).expect("GetStats");
    assert_eq!(st.failures, failures, "{st:?}");
    assert_eq!(st.used_blocks, 4 + ext_blocks + 3 + 32);
}

/// Several client threads, each on its own blocks, in parallel through one
/// client (the handlers run on both workers at once).
#[test]
fn parallel_clients_keep_their_data_apart() {
    let _wd = Watchdog::new("bdev_parallel", WATCHDOG);
    let s = module_setup("bdev_parallel");
    let data = Scratch::new("bdev_parallel_data");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let ram = BdevClient::create(&client, "par_ram", &CreateParams::ram(CAPACITY)).expect("ram");
    let path = data.path().join("par.img");
    let file = BdevClient::create(&client, "par_file", &CreateParams::file(&path, CAPACITY))
        .expect("file");
    for dev in [ram, file] {
        std::thread::scope(|sc| {
            for t in 0..4u64 {
                let client = &client;
                sc.spawn(move || {
                    let blocks = dev.allocate_blocks(client, 16).expect("allocate");
                    for round in 0..8u64 {
                        let pending: Vec<_> = blocks
                            .iter()
                            .enumerate()
                            .map(|(i, &off)| {
                                let seed = t * 1_000_000 + round * 1000 + i as u64;
                                dev.async_write(client, off, &pattern(seed, BS as usize))
                                    .expect("submit")
                            })
                            .collect();
                        for p in pending {
                            p.wait_with(|t| t.written).expect("write");
                        }
                        for (i, &off) in blocks.iter().enumerate() {
                            let seed = t * 1_000_000 + round * 1000 + i as u64;
                            assert_eq!(
                                dev.read(client, off, BS as usize).expect("read"),
                                pattern(seed, BS as usize),
                                "thread {t} round {round} block {i}"
                            );
                        }
                    }
                    dev.free_blocks(client, &blocks).expect("free");
                });
            }
        });
        let st = dev.get_stats(&client).expect("stats");
        assert_eq!(st.writes, 4 * 8 * 16);
        assert_eq!(st.reads, 4 * 8 * 16);
        assert_eq!(st.used_blocks, 0);
        assert_eq!(st.failures, 0);
    }
    file.destroy(&client).expect("destroy");
    drop(client);
    rt.stop();
    assert!(!path.exists(), "the file is removed");
}
