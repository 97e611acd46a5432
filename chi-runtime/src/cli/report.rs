//! `chi-runtime status`: a status report as text.

use std::io::Write;

use chi_sdk::proto::StatusReport;

/// Writes `st` as the `status` table.
pub(crate) fn write_report(out: &mut impl Write, st: &StatusReport) -> std::io::Result<()> {
    writeln!(
        out,
        "node {}  pid {}  uptime {:.1} s  clients {}  tasks completed {}",
        st.node_id,
        st.pid,
        st.uptime_ms as f64 / 1e3,
        st.clients,
        st.tasks_completed
    )?;
    writeln!(out, "workers:")?;
    for w in &st.workers {
        let mut notes = String::new();
        if w.stalled {
            notes.push_str("  STALLED (a task runs without returning or yielding)");
        } else if w.sleeping {
            notes.push_str("  (sleeping)");
        }
        for (n, what) in [
            (w.live_tasks, "live tasks"),
            (w.parked_tasks, "parked"),
            (w.periodic_tasks, "periodic"),
            (w.refused, "refused words"),
            (w.cells_skipped, "dead clients' cells skipped"),
            (w.panics, "panics caught"),
            (w.restarts, "restarts"),
            (w.lanes_given, "lanes given away"),
        ] {
            if n > 0 {
                notes.push_str(&format!("  {what} {n}"));
            }
        }
        if w.load_us >= 1.0 {
            notes.push_str(&format!("  load {:.0} µs", w.load_us));
        }
        if let Some(r) = &w.running {
            notes.push_str(&format!("  running {r}"));
        }
        let cpus = if w.cpus.is_empty() {
            String::new()
        } else {
            format!("  cpus {}", w.cpus)
        };
        writeln!(
            out,
            "  #{:<3} {:<13} lanes {:?}{cpus}  completed {}{notes}",
            w.id, w.kind, w.lanes, w.tasks_completed,
        )?;
    }
    if !st.supervisor_cpus.is_empty() {
        writeln!(
            out,
            "supervisor (worker watch, process reaper): cpus {}",
            st.supervisor_cpus
        )?;
    }
    if !st.reinforcement_cpus.is_empty() {
        writeln!(
            out,
            "reinforcement (models, lane balancing): cpus {}",
            st.reinforcement_cpus
        )?;
    }
    if !st.models.is_empty() {
        writeln!(out, "performance models (cost of a task, learned):")?;
        for m in st.models.iter().take(16) {
            let est = if m.estimate_us > 0.0 {
                format!("  module's estimate {:.1} µs", m.estimate_us)
            } else {
                String::new()
            };
            writeln!(
                out,
                "  pool {:<6} method {:<4} {:>10.1} µs  ({} samples){est}",
                m.pool, m.method, m.cost_us, m.samples
            )?;
        }
    }
    writeln!(out, "queue lanes:")?;
    for l in &st.lanes {
        writeln!(
            out,
            "  lane {:<3} {:<13} depth in use {}",
            l.lane, l.priority, l.len
        )?;
    }
    writeln!(out, "segments:")?;
    for u in &st.segments {
        writeln!(
            out,
            "  {:<12} in use {} bytes in {} blocks  free pages {}  owner slots {}",
            u.role, u.used_bytes, u.live_blocks, u.free_pages, u.owners
        )?;
    }
    let r = &st.reaper;
    writeln!(
        out,
        "reaper: {} dead clients, {} blocks ({} bytes) reclaimed, {} in-flight tasks handed to \
         the workers, {} owner slots released",
        r.clients_reaped, r.blocks_freed, r.bytes_freed, r.tasks_handed_over, r.owners_cleared
    )?;
    writeln!(out, "pools:")?;
    for p in &st.pools {
        writeln!(
            out,
            "  {:<6} {:<20} module {:<24} containers {:?}",
            p.id, p.name, p.module, p.containers
        )?;
    }
    write_cluster(out, st)
}

/// The cluster table: every node as `st`'s runtime sees it.
pub(crate) fn write_cluster(out: &mut impl Write, st: &StatusReport) -> std::io::Result<()> {
    let up = st
        .cluster
        .iter()
        .filter(|p| p.state == "up" || p.state == "self")
        .count();
    writeln!(
        out,
        "cluster: {} node(s), {up} up (seen from node {}){}",
        st.cluster.len(),
        st.node_id,
        refusals(st)
    )?;
    let t = &st.peer_traffic;
    if t.frames_out + t.frames_in > 0 {
        writeln!(
            out,
            "  peer traffic: {} frames out ({} B), {} in ({} B); tasks {} out, {} in; \
             replies {} out, {} in",
            t.frames_out,
            t.bytes_out,
            t.frames_in,
            t.bytes_in,
            t.tasks_out,
            t.tasks_in,
            t.replies_out,
            t.replies_in
        )?;
    }
    writeln!(
        out,
        "  {:<5} {:<24} {:<16} {:<8} {:<18} last heartbeat",
        "node", "host", "address", "state", "incarnation"
    )?;
    for p in &st.cluster {
        let last = match p.last_heartbeat_ms {
            Some(ms) => format!("{ms} ms ago"),
            None if p.state == "self" => "-".to_owned(),
            None => "never".to_owned(),
        };
        let inc = if p.incarnation == 0 {
            "-".to_owned()
        } else {
            p.incarnation.to_string()
        };
        writeln!(
            out,
            "  {:<5} {:<24} {:<16} {:<8} {:<18} {last}",
            p.node_id, p.host, p.address, p.state, inc
        )?;
    }
    Ok(())
}

/// What the peer port refused, for the cluster line (empty if nothing).
fn refusals(st: &StatusReport) -> String {
    let mut s = String::new();
    if st.peer_frames_refused > 0 {
        s.push_str(&format!(", {} peer frames refused", st.peer_frames_refused));
    }
    if st.peer_traffic.connections_refused > 0 {
        s.push_str(&format!(
            ", {} peer connections refused (no cluster key)",
            st.peer_traffic.connections_refused
        ));
    }
    s
}
