//! The runtime's segments, as this copy of the library sees them.
//!
//! At `init` the library adopts the segments the runtime announces in its
//! services table (their mappings are the runtime's: nothing is mapped again)
//! and keeps them for the life of the process; the allocator of each is
//! attached on first use. [`crate::container`]'s `main_allocator`,
//! `client_data_allocator` and `runtime_data_allocator` hand them out.

use std::sync::{OnceLock, RwLock};

use super::ContainerError;
use crate::abi::{RuntimeServices, SegmentInfo, segment_kind};
use crate::shm::{Allocator, Segment, SegmentId};

/// An allocator attached on first use (or why it could not be).
type LazyAllocator = OnceLock<Result<Allocator, String>>;

/// The adopted segments: kind, handle and allocator.
struct Segments {
    list: Vec<(u32, Segment, LazyAllocator)>,
}

/// Set once by [`adopt`]; `None` outside a loaded module.
static SEGMENTS: RwLock<Option<&'static Segments>> = RwLock::new(None);

/// Adopts the segments `services` lists. Returns a message on failure.
pub(super) fn adopt(services: &'static RuntimeServices) -> Result<(), String> {
    let infos: &[SegmentInfo] = if services.segments.is_null() {
        &[]
    } else {
        // SAFETY: the runtime's leaked list of `num_segments` entries.
        unsafe { std::slice::from_raw_parts(services.segments, services.num_segments) }
    };
    let mut list = Vec::new();
    for s in infos {
        // SAFETY: the runtime keeps its segments mapped while it runs modules.
        let seg = unsafe { Segment::adopt_external(SegmentId(s.id), s.base, s.len) }
            .map_err(|e| e.to_string())?;
        list.push((s.kind, seg, OnceLock::new()));
    }
    let segs: &'static Segments = Box::leak(Box::new(Segments { list }));
    *SEGMENTS.write().unwrap_or_else(|e| e.into_inner()) = Some(segs);
    Ok(())
}

/// The allocator of the adopted segment of `kind` (`what` names it in errors).
fn allocator(kind: u32, what: &'static str) -> Result<&'static Allocator, ContainerError> {
    let segs = SEGMENTS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .ok_or(ContainerError::NoRuntime)?;
    let (_, seg, cell) = segs
        .list
        .iter()
        .find(|(k, _, _)| *k == kind)
        .ok_or(ContainerError::NoSegment(what))?;
    cell.get_or_init(|| Allocator::attach(seg).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|message| ContainerError::Segment {
            what,
            message: message.clone(),
        })
}

/// The allocator of the runtime's main segment: tasks, and what their fields
/// own. Use it for outputs stored in a task.
pub fn main_allocator() -> Result<&'static Allocator, ContainerError> {
    allocator(segment_kind::MAIN, "main")
}

/// The allocator of the client-data segment, where clients put bulk data.
pub fn client_data_allocator() -> Result<&'static Allocator, ContainerError> {
    allocator(segment_kind::CLIENT_DATA, "client_data")
}

/// The allocator of the runtime-data segment, for a container's own shared data.
pub fn runtime_data_allocator() -> Result<&'static Allocator, ContainerError> {
    allocator(segment_kind::RUNTIME_DATA, "runtime_data")
}

/// The adopted segment of `kind` (a [`segment_kind`]), if the runtime maps one.
pub(crate) fn segment(kind: u32) -> Result<Segment, ContainerError> {
    let segs = SEGMENTS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .ok_or(ContainerError::NoRuntime)?;
    segs.list
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, seg, _)| seg.clone())
        .ok_or(ContainerError::NoSegment(match kind {
            segment_kind::MAIN => "main",
            segment_kind::CLIENT_DATA => "client_data",
            _ => "runtime_data",
        }))
}
