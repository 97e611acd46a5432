//! `peer`: the same request-response round trip as `roundtrip` (a `u64` out, the
//! same `u64` back, the client spinning) through iceoryx2 between this process
//! and a server process, so that Chimaera's echo can be compared with a
//! zero-copy IPC library measured in the same run. Behind the cargo feature
//! `iceoryx2`, which CI does not build:
//! `cargo build --release -p chi-runtime -p chi-bench --features chi-bench/iceoryx2`.

use anyhow::Result;

use crate::Ctx;

/// How to get the workload.
#[cfg(not(feature = "iceoryx2"))]
pub const HOW: &str = "not built: rebuild with `cargo build --release -p chi-bench --features iceoryx2` \
                   to compare with iceoryx2 request-response";

/// Measures and records (or says how to enable the workload).
pub fn run(ctx: &mut Ctx) -> Result<()> {
    #[cfg(feature = "iceoryx2")]
    {
        imp::run(ctx)
    }
    #[cfg(not(feature = "iceoryx2"))]
    {
        ctx.report.note("peer", HOW);
        Ok(())
    }
}

/// The hidden `__peer-server` process.
pub fn server_child(service: &str) -> Result<()> {
    #[cfg(feature = "iceoryx2")]
    {
        imp::server(service)
    }
    #[cfg(not(feature = "iceoryx2"))]
    {
        anyhow::bail!("cannot serve {service}: {HOW}")
    }
}

#[cfg(feature = "iceoryx2")]
mod imp {
    use std::time::{Duration, Instant};

    use anyhow::{Result, anyhow, bail};
    use iceoryx2::prelude::*;

    use crate::Ctx;
    use crate::child::{self, ChildGuard};
    use crate::report::{Base, Series, Unit};
    use crate::stats::{self, ns_u32};

    /// The value that tells the server to exit.
    const STOP: u64 = u64::MAX;

    /// A node, with iceoryx2's own log limited to errors (unless `IOX2_LOG_LEVEL`
    /// says otherwise): it warns that no config file was found.
    fn node() -> Result<Node<ipc::Service>> {
        set_log_level_from_env_or(LogLevel::Error);
        NodeBuilder::new().create::<ipc::Service>().map_err(ice)
    }

    fn ice(e: impl std::fmt::Debug) -> anyhow::Error {
        anyhow!("iceoryx2: {e:?}")
    }

    /// The echo server: answers every request with its own value.
    pub fn server(service: &str) -> Result<()> {
        let parent = std::os::unix::process::parent_id();
        let node = node()?;
        let name: ServiceName = service.try_into().map_err(ice)?;
        let svc = node
            .service_builder(&name)
            .request_response::<u64, u64>()
            .open_or_create()
            .map_err(ice)?;
        let server = svc.server_builder().create().map_err(ice)?;
        child::say_ready()?;
        let mut idle = 0u32;
        loop {
            match server.receive().map_err(ice)? {
                Some(req) => {
                    let v = *req;
                    req.send_copy(v).map_err(ice)?;
                    if v == STOP {
                        return Ok(());
                    }
                    idle = 0;
                }
                None => {
                    std::hint::spin_loop();
                    idle = idle.wrapping_add(1);
                    if idle & 0xF_FFFF == 0 && child::orphaned(parent) {
                        bail!("the parent went away");
                    }
                }
            }
        }
    }

    /// Measures and records.
    pub fn run(ctx: &mut Ctx) -> Result<()> {
        let n = ctx.opts.iters();
        let bar = ctx.progress.bar(n, "peer: iceoryx2 round trip");
        let service = format!("chi-bench/{}/echo", std::process::id());
        let args = vec!["__peer-server".to_owned(), service.clone()];
        let mut server = ChildGuard::spawn_self(&args, "iceoryx2 echo server")?;
        server.wait_ready()?;
        let node = node()?;
        let name: ServiceName = service.as_str().try_into().map_err(ice)?;
        let svc = node
            .service_builder(&name)
            .request_response::<u64, u64>()
            .open_or_create()
            .map_err(ice)?;
        let client = svc.client_builder().create().map_err(ice)?;
        let round_trip = |v: u64| -> Result<u64> {
            let pending = client.send_copy(v).map_err(ice)?;
            let mut spins = 0u32;
            let mut since = None::<Instant>;
            loop {
                if let Some(resp) = pending.receive().map_err(ice)? {
                    return Ok(*resp);
                }
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins & 0xFFFF == 0
                    && since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(5)
                {
                    bail!("the iceoryx2 server stopped answering");
                }
            }
        };
        for i in 0..(n / 10).clamp(100, 10_000) {
            round_trip(i)?;
        }
        let mut samples = Vec::with_capacity(n as usize);
        for i in 0..n {
            let t = Instant::now();
            let r = round_trip(i)?;
            samples.push(ns_u32(t.elapsed()));
            if r != i {
                bail!("the iceoryx2 server answered {r} for {i}");
            }
            if i & 0xFFFF == 0xFFFF {
                bar.inc(0x10000);
            }
        }
        // The stop request's answer may never be read: the server exits.
        let _ = client.send_copy(STOP).map_err(ice)?;
        server.finish(Duration::from_secs(5))?;
        bar.finish_and_clear();

        let s = stats::summarize(&mut samples);
        let r = &mut ctx.report;
        let w = "peer";
        let pp = Some(Base::PingPong);
        let what = "iceoryx2 request-response u64 echo, 2 processes";
        r.add(w, format!("{what}: median"), s.p50, Unit::Ns, pp);
        r.add(w, format!("{what}: p99"), s.p99, Unit::Ns, pp);
        r.add(w, format!("{what}: p99.9"), s.p999, Unit::Ns, pp);
        r.latency_cdf.push(Series {
            label: "peer: iceoryx2 request-response".into(),
            points: stats::cdf_points(&samples, 400),
        });
        let ours = r
            .rows
            .iter()
            .find(|row| row.name == "sync echo, 1 client process: median")
            .map(|row| row.value);
        if let Some(ours) = ours {
            r.note(
                w,
                format!(
                    "Chimaera's sync echo (1 client process) takes {:.2}× the iceoryx2 round trip",
                    ours / s.p50
                ),
            );
        }
        r.detail("peer", s);
        Ok(())
    }
}
