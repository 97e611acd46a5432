//! kCensus: a container reports its node and id in collection outputs, so
//! that a broadcast shows what the generated default aggregation does
//! (collections append in container order; values and `#[inout]` fields keep
//! container 0's).

use chi_sdk::container::main_allocator;
use chi_sdk::task::Failure;

use crate::tasks::CensusTask;

/// Fills `task` for container `container` on node `node`.
pub(super) fn census(task: &mut CensusTask, node: u32, container: u32) -> Result<(), Failure> {
    let alloc = main_allocator()?;
    let oom = |e: chi_sdk::shm::AllocError| Failure::failed(format!("kCensus: {e}"));
    task.nodes.push(alloc, node).map_err(oom)?;
    task.containers.push(alloc, container).map_err(oom)?;
    task.trail
        .set(alloc, &format!("c{container}@n{node};"))
        .map_err(oom)?;
    task.first_node = node;
    task.note.get_mut()?.write(format!("n{node}|").as_bytes())?;
    task.tag = task.tag.wrapping_add(container.wrapping_mul(100));
    Ok(())
}
