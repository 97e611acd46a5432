//! Workloads whose runtime feature has not landed yet: the sub-commands exist,
//! say what they wait for, and succeed.

use crate::Ctx;

/// Why `remote` cannot run yet.
pub const REMOTE: &str = "not available yet: needs multi-node (tasks forwarded between runtimes)";

/// `remote`: round trip and pipelined throughput between two runtimes.
pub fn remote(ctx: &mut Ctx) {
    ctx.report.note("remote", REMOTE);
}
