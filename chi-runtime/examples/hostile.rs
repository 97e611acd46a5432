//! A hostile (and a clumsy) client of a runtime: pushes garbage and stale
//! pointers, scribbles on the runtime's structures in shared memory, dies while
//! holding tasks and buffers or in the middle of a push, floods the runtime
//! with slow tasks — and, as `good`, a well-behaved client that checks every
//! answer. The robustness tests (`tests/hostile_clients.rs`) run it against real
//! runtimes; it also runs by hand:
//!
//! ```text
//! CHI_PORT=9513 cargo run -p chi-runtime --example hostile -- garbage 1000 7
//! ```
//!
//! Every command prints `READY` when it holds what it is meant to hold (for the
//! tests that kill it then) and `DONE …` with its figures when it finishes.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::admin::{AdminClient, EchoTask};
use chi_sdk::client::{CallError, Client, ClientError, ClientOptions};
use chi_sdk::proto::{self, RuntimeBlock};
use chi_sdk::queue::Priority;
use chi_sdk::shm::{Segment, SegmentId, ShmPtr};
use chi_sdk::task::{TaskHeader, code, flags};
use chi_sdk::types::{DomainQuery, PoolId};
use chimaera_mod_name_runtime::{CreateParams, ModNameClient};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| -> u64 {
        args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
    };
    let cmd = args.first().map(String::as_str).unwrap_or("help");
    let client = || Client::connect(ClientOptions::from_env()).context("connecting");
    match cmd {
        "good" => good(&client()?, Duration::from_millis(arg(1, 1000))),
        "good-lane" => good_lane(&client()?, arg(1, 0) as usize, arg(2, 100)),
        "garbage" => garbage(&client()?, arg(1, 1000), arg(2, 1)),
        "stale" => stale(&client()?),
        "scribble" => scribble(&client()?),
        "hold" => hold(&client()?, arg(1, 100), arg(2, 4)),
        "claim" => claim(&client()?, arg(1, 0) as usize),
        "connect" => {
            let c = client()?;
            println!("READY client {}", c.client_id());
            // Leave without running destructors: no unregistration, no free.
            std::process::exit(0)
        }
        "flood" => flood(&client()?, arg(1, 100) as usize, arg(2, 50) as u32),
        "block" => block(&client()?, arg(1, 1000) as u32, true),
        "nap" => block(&client()?, arg(1, 1000) as u32, false),
        _ => {
            eprintln!(
                "usage: hostile good MS | good-lane LANE N | garbage N SEED | stale | scribble | hold TASKS BUFFERS \
                 | claim LANE | connect | flood N MS | block MS | nap MS   (runtime from CHI_PORT)"
            );
            bail!("unknown command {cmd:?}")
        }
    }
}

fn done(what: &str) {
    println!("DONE {what}");
    let _ = std::io::stdout().flush();
}

fn ready() {
    println!("READY");
    let _ = std::io::stdout().flush();
}

/// Echo tasks in a loop for `time`, every answer checked.
fn good(c: &Client, time: Duration) -> Result<()> {
    let admin = AdminClient::new(c);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < time {
        let v = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let got = admin.echo(PoolId::ADMIN, v).context("echo")?;
        if got != v {
            bail!("echo answered {got} for {v}");
        }
        n += 1;
    }
    done(&format!("echoes={n}"));
    Ok(())
}

/// `n` echo tasks pinned to process-queue lane `lane`, each waited for with a
/// deadline of 20 s.
fn good_lane(c: &Client, lane: usize, n: u64) -> Result<()> {
    for v in 0..n {
        let t = c.new_task(EchoTask::new(PoolId::ADMIN, v))?;
        c.enqueue_to_lane(&t, lane)?;
        c.wait_timeout(&t, Duration::from_secs(20))
            .with_context(|| format!("echo {v} on lane {lane}"))?;
        t.result()?;
        if t.get().reply != v {
            bail!("lane {lane}: echo answered {} for {v}", t.get().reply);
        }
        c.del_task(t);
    }
    done(&format!("lane={lane} echoes={n}"));
    Ok(())
}

/// A small xorshift generator (the program needs no dependency for this).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The runtime's main segment, mapped by this process, and its runtime block.
fn runtime_block(c: &Client) -> Result<(Segment, ShmPtr, ShmPtr, ShmPtr)> {
    let port: u16 = std::env::var("CHI_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(proto::DEFAULT_PORT);
    let main = Segment::attach(&chi_runtime::ipc::segment_name(port, "main"))?;
    let rb = main.root(proto::ROOT_RUNTIME).context("no runtime block")?;
    let q = main.root(proto::ROOT_QUEUE).context("no queue")?;
    // SAFETY: the runtime block was validated by the client at connect.
    let beats = unsafe { rb.resolve::<RuntimeBlock>()?.as_ref() }.lane_beats;
    let _ = c;
    Ok((main, rb, q, beats))
}

/// Pushes `n` random words onto random lanes: fully random, a segment id past
/// the table, offsets anywhere in the main segment, offsets near the
/// runtime's structures.
fn garbage(c: &Client, n: u64, seed: u64) -> Result<()> {
    let (main, rb, q, beats) = runtime_block(c)?;
    let mut rng = Rng(seed.max(1).wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let lanes = c.queue().num_lanes() as u64;
    let size = main.size();
    let mut pushed = 0;
    for _ in 0..n {
        let r = rng.next();
        let word = match r % 6 {
            0 => rng.next(),
            1 => ShmPtr::new(
                SegmentId(256 + (rng.next() % 60000) as u16),
                rng.next() % size,
            )
            .to_bits(),
            2 => ShmPtr::new(main.id(), rng.next() % size).to_bits(),
            3 => ShmPtr::new(main.id(), (rng.next() % size) & !15).to_bits(),
            4 => {
                let base = [rb, q, beats][(rng.next() % 3) as usize];
                base.byte_add(rng.next() % 256).unwrap_or(base).to_bits()
            }
            _ => ShmPtr::new(SegmentId((rng.next() % 4) as u16), rng.next() % 4096).to_bits(),
        };
        if word == 0 {
            continue;
        }
        if c.queue()
            .try_push((rng.next() % lanes) as usize, ShmPtr::from_bits(word))
            .is_ok()
        {
            pushed += 1;
        }
    }
    done(&format!("pushed={pushed}"));
    Ok(())
}

/// Pushes stale and wrong pointers of every kind, then checks that the
/// runtime still answers and that a live task with a lying size fails cleanly.
fn stale(c: &Client) -> Result<()> {
    let (main, rb, q, beats) = runtime_block(c)?;
    let alloc = c.main_allocator();
    let lanes = c.queue().num_lanes();
    let mut words = vec![
        rb,
        q,
        beats,
        ShmPtr::new(main.id(), 0),
        ShmPtr::new(main.id(), 64),
        q.byte_add(128)?,
        q.byte_add(256)?,
    ];
    // A freed task.
    let t = c.new_task(EchoTask::new(PoolId::ADMIN, 1))?;
    let freed = t.shm();
    c.del_task(t);
    words.push(freed);
    // A pointer into a live task.
    let live = c.new_task(EchoTask::new(PoolId::ADMIN, 2))?;
    words.push(live.shm().byte_add(16)?);
    // A live block that is not a task.
    let plain = alloc.allocate_zeroed(256)?;
    words.push(plain.shm());
    // A client-data buffer.
    let buf = c.allocate_buffer(4096)?;
    words.push(buf.shm());
    for (i, w) in words.iter().enumerate() {
        let _ = c.queue().try_push(i % lanes, *w);
    }
    // A live task whose header claims more than its block.
    let mut lying = EchoTask::new(PoolId::ADMIN, 3);
    lying.header.size = 1 << 20;
    let lying_size = lying.header.size;
    let t = c.new_task(lying)?;
    // SAFETY: the task is ours and not yet enqueued.
    unsafe { (*(t.shm().resolve::<TaskHeader>()?.as_ptr())).size = lying_size };
    c.enqueue(&t, Priority::LowLatency)?;
    c.wait_timeout(&t, Duration::from_secs(30))?;
    let r = t.result();
    match &r {
        Err(e) if e.code == code::BAD_TASK => {}
        other => bail!("a task lying about its size completed with {other:?}"),
    }
    c.del_task(t);
    // The runtime still answers.
    let admin = AdminClient::new(c);
    for v in 0..100 {
        if admin.echo(PoolId::ADMIN, v)? != v {
            bail!("wrong echo");
        }
    }
    c.del_task(live);
    alloc.free(plain.shm())?;
    c.free_buffer(buf.shm())?;
    done(&format!("pushed={}", words.len()));
    Ok(())
}

/// Scribbles on what clients can write of the runtime's structures: the lane
/// positions the consumer publishes, the runtime block's counters and the
/// lane beats; then checks the runtime still answers.
fn scribble(c: &Client) -> Result<()> {
    let (_main, rb, q, beats) = runtime_block(c)?;
    // The consumer's published heads: one word per lane after the producers'
    // tail, every 128 bytes from the queue's lane array; overwrite a band of
    // words past the queue header with garbage *positions* (never the
    // geometry the runtime keeps in its own memory).
    let block = rb.resolve::<RuntimeBlock>()?;
    // SAFETY: mapped; we write plain words that every bit pattern allows.
    unsafe {
        let b = block.as_ptr();
        (*b).pid = 1;
        (*b).num_lanes = 1 << 30;
        (*b).started_unix_ns = u64::MAX;
    }
    let beat_words = beats.resolve_slice::<AtomicU64>(2)?;
    // SAFETY: as above.
    unsafe {
        for i in 0..2 {
            (*beat_words.as_ptr().add(i)).store(u64::MAX, Ordering::Relaxed);
        }
    }
    let _ = q;
    // The consumers' published positions.
    for lane in 0..c.queue().num_lanes() {
        c.queue()
            .scribble_head(lane, 0xdead_beef_0000 + lane as u64);
    }
    // The runtime still answers this client.
    let admin = AdminClient::new(c);
    for v in 0..200 {
        if admin.echo(PoolId::ADMIN, v)? != v {
            bail!("wrong echo after scribbling");
        }
    }
    done("scribbled");
    Ok(())
}

/// Holds `tasks` allocated tasks (some submitted and slow), `buffers`
/// client-data buffers of 256 KiB, then prints READY and waits to be killed.
fn hold(c: &Client, tasks: u64, buffers: u64) -> Result<()> {
    let m = ModNameClient::create(c, "hostile_sleepers", &CreateParams::default())?;
    let mut held = Vec::new();
    for i in 0..tasks {
        held.push(c.new_task(EchoTask::new(PoolId::ADMIN, i))?);
    }
    let mut pending = Vec::new();
    for _ in 0..4 {
        pending.push(m.async_sleep(c, 300, false)?);
    }
    let mut bufs = Vec::new();
    for _ in 0..buffers {
        bufs.push(c.allocate_buffer(256 << 10)?);
    }
    // Fire-and-forget tasks in flight too.
    for v in 0..16 {
        let mut t = EchoTask::new(PoolId::ADMIN, v);
        t.header.flags |= flags::FIRE_AND_FORGET;
        let t = c.new_task(t)?;
        // The runtime frees it: the handle is simply let go.
        c.enqueue(&t, Priority::LowLatency)?;
    }
    ready();
    std::mem::forget((held, pending, bufs));
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Claims a cell of `lane` without publishing it, prints READY, and exits
/// without cleaning up (as if killed mid-push).
fn claim(c: &Client, lane: usize) -> Result<()> {
    let pos = c
        .queue()
        .claim_without_publishing(lane)
        .context("lane full")?;
    println!("READY claimed lane {lane} position {pos}");
    let _ = std::io::stdout().flush();
    std::process::abort()
}

/// Submits `n` slow (yielding) tasks of `ms` each at once and waits for all;
/// every one must succeed.
fn flood(c: &Client, n: usize, ms: u32) -> Result<()> {
    let m = ModNameClient::create(c, "hostile_sleepers", &CreateParams::default())?;
    let mut pending = Vec::new();
    for _ in 0..n {
        pending.push(m.async_sleep(c, ms, false)?);
    }
    let mut failed = 0;
    for p in pending {
        match p.wait() {
            Ok(t) => c.del_task(t),
            Err(e) => {
                failed += 1;
                eprintln!("slow task failed: {e}");
            }
        }
    }
    done(&format!("slow={n} failed={failed}"));
    if failed > 0 {
        bail!("{failed} of {n} slow tasks failed");
    }
    Ok(())
}

/// Sends one task that holds its worker for `ms` without yielding, and waits
/// for it with the runtime's deadline: prints how the wait ended.
/// A sleep task of `ms` that holds its worker (`hold`) or yields meanwhile;
/// reports whether it completed or made no progress.
fn block(c: &Client, ms: u32, hold: bool) -> Result<()> {
    let m = ModNameClient::create(c, "hostile_sleepers", &CreateParams::default())?;
    let p = m.async_sleep(c, ms, hold)?;
    ready();
    match p.wait() {
        Ok(t) => {
            c.del_task(t);
            done("completed");
        }
        Err(CallError::Client(ClientError::NoProgress { lane, .. })) => {
            done(&format!("no-progress lane={lane}"));
        }
        Err(e) => bail!("unexpected: {e}"),
    }
    let _ = DomainQuery::local();
    Ok(())
}
