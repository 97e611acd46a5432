//! The `compress` example module (`libchimaera_compress_runtime.so`) in a real
//! runtime: real data of several sizes round-trips through Compress and
//! Decompress on LZ4 and DEFLATE pools, compressible data shrinks, calls run
//! asynchronously in flight, and bad input — garbage frames, corrupt payloads,
//! bad pointers and lengths in the task — fails that task with a clear message
//! while the runtime keeps serving.
//!
//! The test builds the module libraries itself (see `support::modules`).

mod support;

use chi_sdk::bytes::{ClientBuf, ClientBytes};
use chi_sdk::client::{CallError, Client, TaskError};
use chi_sdk::queue::Priority;
use chi_sdk::shm::{Allocator, Segment, SegmentId, ShmPtr};
use chi_sdk::task::code;
use chi_sdk::types::DomainQuery;
use chimaera_compress_runtime as compress;
use compress::frame::{self, ALGO_DEFLATE, ALGO_LZ4, ALGO_STORED, HEADER_LEN};
use compress::{
    CODEC_DEFLATE, CODEC_POOL_DEFAULT, Codec, CompressClient, CompressTask, CreateParams,
    DecompressTask, errcode,
};
use support::modules::module_setup;
use support::*;

/// The call failed with `want`; returns its message.
fn task_err<T: std::fmt::Debug>(r: Result<T, CallError>, want: i32, what: &str) -> String {
    match r {
        Err(CallError::Task(TaskError { code, message })) if code == want => message,
        other => panic!("{what}: expected a task error with code {want}, got {other:?}"),
    }
}

/// `n` bytes of log-like text: compressible, but not trivially.
fn text(rng: &mut Rng, n: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "worker",
        "completed",
        "task",
        "pool",
        "lane",
        "queued",
        "runtime",
        "client",
        "segment",
        "compress",
        "latency",
        "buffer",
    ];
    let mut out = Vec::with_capacity(n + 128);
    let mut line = 0u64;
    while out.len() < n {
        line += 1;
        let w1 = WORDS[rng.range(0, 11) as usize];
        let w2 = WORDS[rng.range(0, 11) as usize];
        let s = format!(
            "{line:08} INFO {w1}-{} {w2} {} in {} us\n",
            rng.range(0, 7),
            rng.range(0, 999),
            rng.range(1, 50)
        );
        out.extend_from_slice(s.as_bytes());
    }
    out.truncate(n);
    out
}

/// `n` random bytes: incompressible.
fn noise(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(n);
    out
}

/// An allocator handle of the runtime's client-data segment (the client's
/// mapping, shared), to count its live blocks and to make bad pointers.
fn client_data(port: u16) -> (Segment, Allocator) {
    let seg = Segment::attach(&chi_runtime::ipc::segment_name(port, "client_data"))
        .expect("attach the client-data segment");
    let alloc = Allocator::attach(&seg).expect("client-data allocator");
    (seg, alloc)
}

/// Submits a raw Compress task and waits for its outcome: the frame and its
/// algorithm (the task and its buffers are freed).
fn raw_compress(client: &Client, task: CompressTask) -> Result<(Vec<u8>, u32), CallError> {
    client
        .submit(task, Priority::LowLatency)?
        .wait_with(|t| (t.output.to_vec(client), t.algorithm))
        .map(|(b, a)| (b.expect("read the output"), a))
}

/// Submits a raw Decompress task and waits for its output.
fn raw_decompress(client: &Client, task: DecompressTask) -> Result<Vec<u8>, CallError> {
    client
        .submit(task, Priority::LowLatency)?
        .wait_bytes(|t| &t.output)
}

/// `data` in a new client-data block.
fn bytes(client: &Client, data: &[u8]) -> ClientBytes {
    ClientBytes::new(client, data).expect("allocate a buffer")
}

/// Round-trips `data` through `pool` and checks the frame.
fn round_trip(client: &Client, pool: &CompressClient, data: &[u8], what: &str) -> Vec<u8> {
    let (f, _) = pool
        .compress(client, data, CODEC_POOL_DEFAULT)
        .unwrap_or_else(|e| panic!("{what}: compress: {e}"));
    let h = frame::header(&f).unwrap_or_else(|e| panic!("{what}: frame header: {e}"));
    assert_eq!(h.original_len, data.len() as u64, "{what}");
    assert!(f.len() <= frame::max_frame_len(data.len()), "{what}");
    // The module's frames decode with the library, and back through the runtime.
    assert!(frame::decode(&f).expect("decode locally") == data, "{what}");
    let back = pool
        .decompress(client, &f)
        .unwrap_or_else(|e| panic!("{what}: decompress: {e}"));
    assert!(back == data, "{what}: the round trip changed the data");
    f
}

#[test]
fn generated_constants() {
    assert_eq!(compress::CHIMOD_LIB_NAME, "chimaera_compress");
    assert_eq!(compress::method::COMPRESS, 10);
    assert_eq!(compress::method::DECOMPRESS, 11);
    assert_eq!(
        <CreateParams as chi_sdk::admin::PoolParams>::CHIMOD_LIB_NAME,
        "chimaera_compress"
    );
    assert!(compress::method::ALL.contains(&("kNodeFailure", -1)));
}

#[test]
fn compress_round_trips_real_data() {
    let _wd = Watchdog::new("compress_round_trips_real_data", WATCHDOG);
    let s = module_setup("compress_round_trip");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let (_seg, cdata) = client_data(s.port);
    let baseline = cdata.stats().live_blocks;
    let mut rng = Rng::new(0xC0FFEE);

    let lz4 = CompressClient::create(&client, "lz4", &CreateParams::default()).expect("lz4 pool");
    let deflate = CompressClient::create(
        &client,
        "deflate",
        &CreateParams {
            codec: Codec::Deflate,
            level: 9,
        },
    )
    .expect("deflate pool");
    assert_ne!(lz4.pool, deflate.pool);

    let mib_text = text(&mut rng, 1 << 20);
    let random = noise(&mut rng, 256 << 10);
    for (name, pool, algo) in [("lz4", &lz4, ALGO_LZ4), ("deflate", &deflate, ALGO_DEFLATE)] {
        // Empty and one byte: a stored frame, the header alone plus the byte.
        let f = round_trip(&client, pool, b"", &format!("{name} empty"));
        assert_eq!((f.len(), f[4]), (HEADER_LEN, ALGO_STORED));
        let f = round_trip(&client, pool, b"x", &format!("{name} 1 byte"));
        assert_eq!((f.len(), f[4]), (HEADER_LEN + 1, ALGO_STORED));

        // 1 MiB of text shrinks a lot.
        let f = round_trip(&client, pool, &mib_text, &format!("{name} 1 MiB text"));
        assert_eq!(f[4], algo, "{name}");
        assert!(
            f.len() < mib_text.len() / 2,
            "{name}: 1 MiB of text compressed to only {} bytes",
            f.len()
        );
        eprintln!(
            "{name}: 1 MiB of text -> {} bytes (ratio {:.2})",
            f.len(),
            mib_text.len() as f64 / f.len() as f64
        );

        // Random bytes do not: stored, 20 bytes more than the data.
        let f = round_trip(&client, pool, &random, &format!("{name} random"));
        assert_eq!((f.len(), f[4]), (random.len() + HEADER_LEN, ALGO_STORED));
    }

    // DEFLATE at level 9 beats LZ4 on text; a task may override the codec, and a
    // pool decompresses frames of any codec.
    let (by_lz4, _) = lz4
        .compress(&client, &mib_text, CODEC_POOL_DEFAULT)
        .expect("lz4");
    let (by_deflate, _) = deflate
        .compress(&client, &mib_text, CODEC_POOL_DEFAULT)
        .expect("deflate");
    assert!(by_deflate.len() < by_lz4.len());
    let (f, algorithm) = lz4
        .compress(&client, &mib_text, CODEC_DEFLATE)
        .expect("deflate on the lz4 pool");
    assert_eq!(f[4], ALGO_DEFLATE);
    assert_eq!(algorithm, u32::from(ALGO_DEFLATE));
    assert!(lz4.decompress(&client, &by_deflate).expect("cross") == mib_text);
    assert!(deflate.decompress(&client, &by_lz4).expect("cross") == mib_text);

    // Asynchronous calls: many in flight on both pools, small ones on the
    // low-latency lane and large ones on the bulk lanes.
    let inputs: Vec<Vec<u8>> = (0..48usize)
        .map(|i| {
            let n = if i.is_multiple_of(4) {
                rng.range(64 << 10, 160 << 10)
            } else {
                rng.range(0, 8 << 10)
            } as usize;
            if i.is_multiple_of(5) {
                noise(&mut rng, n)
            } else {
                text(&mut rng, n)
            }
        })
        .collect();
    let pool_of = |i: usize| if i.is_multiple_of(2) { &lz4 } else { &deflate };
    let pending: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            pool_of(i)
                .async_compress(&client, d, CODEC_POOL_DEFAULT)
                .expect("submit")
        })
        .collect();
    let frames: Vec<Vec<u8>> = pending
        .into_iter()
        .map(|p| p.output().expect("async compress").0)
        .collect();
    let pending: Vec<_> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| pool_of(i + 1).async_decompress(&client, f).expect("submit"))
        .collect();
    for (i, p) in pending.into_iter().enumerate() {
        let back = p.output().expect("async decompress");
        assert!(back == inputs[i], "async call {i} changed the data");
    }
    // Monitor sent the large inputs to the bulk lanes, which run on the
    // high-latency worker.
    let st = Client::status(&s.opts()).expect("status");
    assert!(
        st.workers
            .iter()
            .any(|w| w.kind == "high_latency" && w.tasks_completed > 0),
        "no task ran on a high-latency worker: {:?}",
        st.workers
    );

    // A call dropped once complete, unread: the drop frees the task and its
    // buffers.
    for p in [
        deflate
            .async_compress(&client, &mib_text, CODEC_POOL_DEFAULT)
            .expect("submit"),
        lz4.async_compress(&client, &frames[0], CODEC_POOL_DEFAULT)
            .expect("submit"),
    ] {
        while !p.is_complete() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(p);
    }

    // Every client-data buffer was freed.
    assert_eq!(
        cdata.stats().live_blocks,
        baseline,
        "client-data buffers leaked"
    );

    // Creation parameters are checked.
    let e = CompressClient::create(
        &client,
        "bad_level",
        &CreateParams {
            codec: Codec::Deflate,
            level: 11,
        },
    )
    .expect_err("level 11");
    assert!(e.to_string().contains("level 11 is out of range"), "{e}");

    drop(client);
    let log = rt.stop();
    assert!(log.contains("compress container created"), "{log}");
    assert!(log.contains("compress container destroyed"), "{log}");
}

#[test]
fn bad_input_fails_cleanly_and_the_runtime_keeps_serving() {
    let _wd = Watchdog::new("bad_input_fails_cleanly", WATCHDOG);
    let s = module_setup("compress_bad_input");
    let rt = RuntimeGuard::start(&s);
    let client = Client::connect(s.opts()).expect("connect");
    let (_seg, cdata) = client_data(s.port);
    let baseline = cdata.stats().live_blocks;
    let mut rng = Rng::new(7);
    let pool = CompressClient::create(&client, "lz4", &CreateParams::default()).expect("pool");
    let data = text(&mut rng, 50_000);
    let (good, _) = pool
        .compress(&client, &data, CODEC_POOL_DEFAULT)
        .expect("compress");
    let serves = |what: &str| {
        let (f, _) = pool
            .compress(&client, &data, CODEC_POOL_DEFAULT)
            .unwrap_or_else(|e| panic!("after {what}: {e}"));
        assert!(pool.decompress(&client, &f).expect(what) == data, "{what}");
    };

    // Garbage instead of a frame.
    let msg = task_err(
        pool.decompress(&client, &noise(&mut rng, 1000)),
        errcode::CORRUPT_DATA,
        "random bytes",
    );
    assert!(msg.contains("not a compressed frame"), "{msg}");
    let msg = task_err(
        pool.decompress(&client, b"CHZ1\x01"),
        errcode::CORRUPT_DATA,
        "5 bytes",
    );
    assert!(msg.contains("shorter than the 20-byte header"), "{msg}");
    serves("garbage");

    // A frame whose payload, checksum or algorithm was damaged.
    let mut f = good.clone();
    f[HEADER_LEN..]
        .iter_mut()
        .for_each(|b| *b = b.wrapping_mul(31) ^ 0xa5);
    let msg = task_err(
        pool.decompress(&client, &f),
        errcode::CORRUPT_DATA,
        "corrupt payload",
    );
    assert!(msg.contains("corrupt frame"), "{msg}");
    let mut f = good.clone();
    f[17] ^= 0x40;
    let msg = task_err(
        pool.decompress(&client, &f),
        errcode::CORRUPT_DATA,
        "bad checksum",
    );
    assert!(msg.contains("checksum mismatch"), "{msg}");
    let mut f = good.clone();
    f[4] = 77;
    let msg = task_err(
        pool.decompress(&client, &f),
        errcode::CORRUPT_DATA,
        "unknown algorithm",
    );
    assert!(msg.contains("unknown algorithm id 77"), "{msg}");
    let (deflated, _) = pool
        .compress(&client, &data, CODEC_DEFLATE)
        .expect("deflate");
    let mut f = deflated.clone();
    let mid = HEADER_LEN + (f.len() - HEADER_LEN) / 2;
    f[mid..].iter_mut().for_each(|b| *b ^= 0x3c);
    let msg = task_err(
        pool.decompress(&client, &f),
        errcode::CORRUPT_DATA,
        "corrupt deflate",
    );
    assert!(msg.contains("corrupt frame"), "{msg}");
    serves("corrupt frames");

    // Raw tasks with bad pointers and lengths: each fails with BAD_TASK naming
    // the buffer; nothing is read or written outside the client's buffers.
    // Each task owns the valid blocks it names (fresh ones) and is freed with
    // them; a bad pointer is never freed (the free is refused and logged).
    let n = data.len() as u64;
    let cap = n + HEADER_LEN as u64;
    let input = || bytes(&client, &data);
    let output = || ClientBuf::with_capacity(&client, cap as usize).expect("output");
    // The output is the module's to allocate; a client may still name a
    // buffer of its own (a bad one here).
    let ctask = |inp: ClientBytes, out: ClientBuf| {
        let mut t = CompressTask::new(pool.pool, DomainQuery::local(), inp, 0);
        t.output = out;
        t
    };
    let raw_in = |p: ShmPtr, len: u64| ClientBytes::from_raw_parts(p, len);
    let raw_out = |p: ShmPtr, cap: u64| ClientBuf::from_raw_parts(p, cap, 0);
    let main_block = client.main_allocator().allocate(4096).expect("main block");
    let seg_id = cdata.segment_id();
    let freed = client.allocate_buffer(256).unwrap().shm();
    client.free_buffer(freed).unwrap();
    type Make<'a> = Box<dyn Fn() -> CompressTask + 'a>;
    let cases: Vec<(&str, Make<'_>, &str)> = vec![
        (
            "null input",
            Box::new(|| ctask(raw_in(ShmPtr::NULL, 10), output())),
            "input buffer: null pointer with length 10",
        ),
        (
            "input in the main segment",
            Box::new(|| ctask(raw_in(main_block.shm(), 100), output())),
            "is not in the client-data segment",
        ),
        (
            "output in the main segment",
            Box::new(|| ctask(input(), raw_out(main_block.shm(), 4096))),
            "output buffer: ",
        ),
        (
            "unknown segment",
            Box::new(|| ctask(raw_in(ShmPtr::new(SegmentId(4000), 4096), 100), output())),
            "is not in the client-data segment",
        ),
        (
            "garbage offset",
            Box::new(|| ctask(raw_in(ShmPtr::new(seg_id, 0x12345), 100), output())),
            "is not the start of a live client-data block",
        ),
        (
            "past the segment",
            Box::new(|| {
                ctask(
                    raw_in(ShmPtr::new(seg_id, ShmPtr::MAX_OFFSET - 7), 100),
                    output(),
                )
            }),
            "is not the start of a live client-data block",
        ),
        (
            "freed buffer",
            Box::new(|| ctask(raw_in(freed, 100), output())),
            "is not the start of a live client-data block",
        ),
        (
            "length past the block",
            Box::new(|| {
                let small = client.allocate_buffer(100).unwrap().shm();
                ctask(raw_in(small, 1 << 20), output())
            }),
            "length 1048576 runs past the end of the block",
        ),
        (
            "huge length",
            Box::new(|| {
                let b = input();
                ctask(raw_in(b.ptr(), u64::MAX), output())
            }),
            "runs past the end of the block",
        ),
        (
            "output capacity past the block",
            Box::new(|| {
                let small = client.allocate_buffer(100).unwrap().shm();
                ctask(input(), raw_out(small, 1 << 30))
            }),
            "output buffer: length 1073741824 runs past the end",
        ),
        (
            "output is the input",
            Box::new(|| {
                let b = input();
                ctask(b, raw_out(b.ptr(), n))
            }),
            "is in use by another buffer of this task",
        ),
    ];
    for (what, task, want) in &cases {
        let msg = task_err(raw_compress(&client, task()), code::BAD_TASK, what);
        assert!(msg.contains(want), "{what}: {msg}");
    }
    let msg = task_err(
        raw_compress(
            &client,
            CompressTask::new(pool.pool, DomainQuery::local(), input(), 9),
        ),
        code::BAD_TASK,
        "unknown codec",
    );
    assert!(msg.contains("unknown codec 9"), "{msg}");
    // A too-small output is grown by the module.
    let random = noise(&mut rng, 10_000);
    let small = ClientBuf::with_capacity(&client, 100).unwrap();
    let (f, algo) = raw_compress(&client, ctask(bytes(&client, &random), small)).expect("grown");
    assert_eq!((f.len(), algo), (10_020, u32::from(ALGO_STORED)));
    assert!(frame::decode(&f).unwrap() == random);
    // The right sizes work.
    let (f, algo) = raw_compress(&client, ctask(input(), output())).expect("raw compress");
    assert_eq!(algo, u32::from(ALGO_LZ4));
    assert_eq!(f, good);
    let dtask = |inp: ClientBytes, out: ClientBuf| {
        let mut t = DecompressTask::new(pool.pool, DomainQuery::local(), inp);
        t.output = out;
        t
    };
    let back = raw_decompress(
        &client,
        dtask(
            bytes(&client, &good),
            ClientBuf::with_capacity(&client, n as usize).unwrap(),
        ),
    )
    .expect("raw decompress");
    assert!(back == data);
    // A small output grows; no output at all too.
    for out in [
        ClientBuf::with_capacity(&client, 100).unwrap(),
        ClientBuf::EMPTY,
    ] {
        let back = raw_decompress(&client, dtask(bytes(&client, &good), out)).expect("grown");
        assert!(back == data);
    }
    // A frame declaring an absurd length is refused before anything is allocated.
    let mut huge = good.clone();
    huge[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let msg = task_err(
        raw_decompress(&client, dtask(bytes(&client, &huge), ClientBuf::EMPTY)),
        errcode::CORRUPT_DATA,
        "absurd length",
    );
    assert!(msg.contains("declares 1099511627776 bytes"), "{msg}");
    client
        .main_allocator()
        .free(main_block.shm())
        .expect("free the main block");
    serves("bad pointers");
    // Fire-and-forget calls: the runtime frees each task with its buffers
    // (they are the client's), the failed one too.
    for codec in [0, 0, 9, 0] {
        let mut t = CompressTask::new(pool.pool, DomainQuery::local(), input(), codec);
        t.output = output();
        t.header.flags |= chi_sdk::task::flags::FIRE_AND_FORGET;
        let t = client.new_task(t).expect("task");
        client.enqueue(&t, Priority::LowLatency).expect("enqueue");
    }
    chi_sdk::admin::AdminClient::new(&client)
        .flush()
        .expect("flush");
    // Every block a task owned was freed with it (the two small blocks of
    // the "past the block" cases were named with lengths past their ends:
    // freed too, as the tasks owned them).
    assert_eq!(
        cdata.stats().live_blocks,
        baseline,
        "client-data blocks leaked"
    );

    drop(cases);
    drop(client);
    let log = rt.stop();
    assert!(!log.contains("panicked"), "{log}");
}
