//! Compresses a file through a running runtime and prints the ratio.
//!
//! ```sh
//! cargo run -p compress --example compress_file -- FILE [--codec lz4|deflate] [--level N]
//!     [--pool NAME] [--chunk SIZE] [--out FRAMES_FILE]
//! ```
//!
//! The runtime is found as every client finds it (`CHI_PORT`, or the `port` of
//! `CHI_SERVER_CONF`), and must have `libchimaera_compress_runtime.so` in its
//! module path. The file is cut into chunks (4 MiB by default; each chunk and
//! its output must fit in the runtime's client-data segment) that are
//! compressed with up to four calls in flight, then decompressed and compared
//! with the file. `--out` writes the frames, each preceded by its length as a
//! little-endian `u64`.

use std::collections::VecDeque;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use chi_sdk::client::{CallError, Client, ClientError, Pending};
use chimaera_compress_runtime::frame::{self, HEADER_LEN, algorithm_name};
use chimaera_compress_runtime::{
    CODEC_POOL_DEFAULT, Codec, CompressClient, CompressTask, CreateParams, DecompressTask,
};

/// Calls in flight at once.
const WINDOW: usize = 4;

const USAGE: &str = "usage: compress_file FILE [--codec lz4|deflate] [--level 0-10] [--pool NAME] \
                     [--chunk SIZE[k|m]] [--out FRAMES_FILE]";

#[derive(Debug)]
struct Args {
    file: String,
    params: CreateParams,
    pool: Option<String>,
    chunk: usize,
    out: Option<String>,
}

fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.strip_suffix('m') {
        Some(n) => (n, 1 << 20),
        None => match s.strip_suffix('k') {
            Some(n) => (n, 1 << 10),
            None => (s.as_str(), 1),
        },
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut a = Args {
        file: String::new(),
        params: CreateParams::default(),
        pool: None,
        chunk: 4 << 20,
        out: None,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--codec" => {
                a.params.codec = match value("--codec")?.as_str() {
                    "lz4" => Codec::Lz4,
                    "deflate" => Codec::Deflate,
                    other => return Err(format!("unknown codec {other:?}: lz4 or deflate")),
                }
            }
            "--level" => {
                let v = value("--level")?;
                a.params.level = v
                    .parse()
                    .ok()
                    .filter(|&l| l <= frame::MAX_LEVEL)
                    .ok_or(format!("--level {v:?}: a number from 0 to 10"))?;
            }
            "--pool" => a.pool = Some(value("--pool")?),
            "--chunk" => {
                let v = value("--chunk")?;
                a.chunk = parse_size(&v).ok_or(format!("--chunk {v:?}: a size such as 1m"))?;
            }
            "--out" => a.out = Some(value("--out")?),
            "-h" | "--help" => return Err(String::new()),
            f if !f.starts_with('-') && a.file.is_empty() => a.file = f.to_owned(),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if a.file.is_empty() {
        return Err("no FILE given".into());
    }
    Ok(a)
}

/// `e`, with a hint if the client-data segment ran out.
fn hint(e: CallError, chunk: usize) -> Box<dyn std::error::Error> {
    if matches!(e, CallError::Client(ClientError::Alloc(_))) {
        format!(
            "{e}\n  (each call in flight holds its input and output buffers in the client-data \
             segment: up to {WINDOW} calls of {chunk}-byte chunks; use a smaller --chunk)"
        )
        .into()
    } else {
        e.into()
    }
}

fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let data = std::fs::read(&a.file).map_err(|e| format!("cannot read {}: {e}", a.file))?;
    let client = Client::init().map_err(|e| format!("cannot reach the runtime: {e}"))?;
    // One pool per codec and level: a pool keeps the parameters it was created with.
    let pool_name = a.pool.clone().unwrap_or_else(|| match a.params.codec {
        Codec::Lz4 => "compress_file_lz4".to_owned(),
        Codec::Deflate => format!("compress_file_deflate{}", a.params.level),
    });
    let pool = CompressClient::create(&client, &pool_name, &a.params)?;
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[]]
    } else {
        data.chunks(a.chunk).collect()
    };

    // Compress with up to WINDOW calls in flight.
    let t0 = Instant::now();
    let mut frames = Vec::with_capacity(chunks.len());
    let mut in_flight: VecDeque<Pending<'_, CompressTask>> = VecDeque::new();
    for chunk in &chunks {
        if in_flight.len() == WINDOW {
            let p = in_flight.pop_front().expect("a call in flight");
            frames.push(p.output()?.0);
        }
        in_flight.push_back(
            pool.async_compress(&client, chunk, CODEC_POOL_DEFAULT)
                .map_err(|e| hint(e, a.chunk))?,
        );
    }
    for p in in_flight {
        frames.push(p.output()?.0);
    }
    let compress_time = t0.elapsed();

    // Decompress and compare.
    let t1 = Instant::now();
    let mut in_flight: VecDeque<Pending<'_, DecompressTask>> = VecDeque::new();
    let mut back = Vec::with_capacity(data.len());
    for f in &frames {
        if in_flight.len() == WINDOW {
            let p = in_flight.pop_front().expect("a call in flight");
            back.extend_from_slice(&p.output()?);
        }
        in_flight.push_back(
            pool.async_decompress(&client, f)
                .map_err(|e| hint(e, a.chunk))?,
        );
    }
    for p in in_flight {
        back.extend_from_slice(&p.output()?);
    }
    let decompress_time = t1.elapsed();
    if back != data {
        return Err("the decompressed data differs from the file".into());
    }

    if let Some(out) = &a.out {
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(out).map_err(|e| format!("cannot create {out}: {e}"))?,
        );
        for f in &frames {
            w.write_all(&(f.len() as u64).to_le_bytes())?;
            w.write_all(f)?;
        }
        w.flush()?;
    }

    let packed: usize = frames.iter().map(Vec::len).sum();
    let stored = frames.iter().filter(|f| f[4] == frame::ALGO_STORED).count();
    let algo = frames
        .iter()
        .map(|f| f[4])
        .find(|&a| a != frame::ALGO_STORED)
        .unwrap_or(frame::ALGO_STORED);
    let mb_s = |secs: f64| data.len() as f64 / 1e6 / secs.max(1e-9);
    println!("file        {} ({} bytes)", a.file, data.len());
    println!(
        "pool        {pool_name} ({}, level {})",
        a.params.codec, a.params.level
    );
    println!(
        "compressed  {packed} bytes in {} frame(s) ({}; {stored} stored as is)",
        frames.len(),
        algorithm_name(algo)
    );
    if data.is_empty() {
        println!("ratio       n/a (empty file: the frame is its {HEADER_LEN}-byte header)");
    } else {
        println!(
            "ratio       {:.2}:1 ({:.1}% saved)",
            data.len() as f64 / packed as f64,
            100.0 * (1.0 - packed as f64 / data.len() as f64)
        );
    }
    println!(
        "compress    {:.1} ms ({:.0} MB/s)",
        compress_time.as_secs_f64() * 1e3,
        mb_s(compress_time.as_secs_f64())
    );
    println!(
        "decompress  {:.1} ms ({:.0} MB/s), round trip verified",
        decompress_time.as_secs_f64() * 1e3,
        mb_s(decompress_time.as_secs_f64())
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("compress_file: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compress_file: {e}");
            ExitCode::FAILURE
        }
    }
}
