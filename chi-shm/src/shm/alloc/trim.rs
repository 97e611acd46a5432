//! Giving the empty pages of the size classes back to the page pool.
//!
//! # Design
//!
//! Runs under the page lock, when a claim of pages found no free run (the slow
//! path of a slow path: never while pages are left). For each class:
//!
//! 1. Detach the whole shared free list with one CAS ([`TaggedStack::take_all`]).
//!    The walker then owns every block it reaches: concurrent pops see an empty
//!    list (and carve a fresh page, or fail over to another trim), concurrent
//!    pushes start a new list.
//! 2. Walk the detached chain, checking every node like a pop does (inside the
//!    heap, a FREE block of a page of this class) and bounding the walk by the
//!    number of blocks the heap can hold; a node seen twice is a cycle. A bad link
//!    ends the walk there: the rest is abandoned and counted as a corrupt list.
//! 3. A page all of whose blocks are on the chain has no LIVE or CACHED block, so
//!    nobody else can reach it: it becomes FREE again ([`Pages::release_small`], which
//!    also merges it into the top of the used range). The other blocks go back on
//!    the list as one chain.
//!
//! A pop that read the old head before the detach fails its CAS (the tag moved
//! on); a stale pointer into a released page is refused by `free` (its descriptor
//! is no longer SMALL). Such a stale pop may still load a link from a page that
//! was given to a large run meanwhile: an atomic load of user data whose value is
//! ignored.

use std::collections::{HashMap, HashSet};

use super::layout::{self, NUM_CLASSES};
use super::pages::Pages;
use super::shared::Shared;
use super::stack::{Links, TaggedStack};
use crate::sync::Ordering;

impl Shared {
    /// Gives every size-class page whose blocks are all on its class's shared
    /// free list back to the page pool; returns how many pages.
    pub(super) fn trim(&self, pages: &Pages<'_>) -> u64 {
        (0..NUM_CLASSES).map(|c| self.trim_class(pages, c)).sum()
    }

    fn trim_class(&self, pages: &Pages<'_>, class: usize) -> u64 {
        let list: &TaggedStack = &self.hdr().classes[class].0;
        let links = self.class_links(class);
        let Ok(mut node) = list.take_all() else {
            return 0;
        };
        let per_page = layout::blocks_per_page(class);
        let max = self.n_pages * per_page;
        let mut nodes = Vec::new();
        let mut seen = HashSet::new();
        pages.beat();
        while node != 0 {
            if nodes.len() % 4096 == 4095 {
                pages.beat();
            }
            if nodes.len() as u64 >= max || !links.is_node(node) || !seen.insert(node) {
                // Logged and counted; the detached rest is simply not followed.
                let _ = self.corrupt_list(class, node);
                break;
            }
            nodes.push(node);
            // Relaxed: the detach's Acquire CAS made the chain's links visible.
            node = links.next(node).load(Ordering::Relaxed);
        }
        let mut on_list: HashMap<u64, u64> = HashMap::new();
        for &b in &nodes {
            *on_list.entry(self.page_of(b)).or_default() += 1;
        }
        let mut empty: Vec<u64> = on_list
            .iter()
            .filter(|&(_, &n)| n == per_page)
            .map(|(&p, _)| p)
            .collect();
        // Highest first: each release then merges into the top of the used range
        // if it can.
        empty.sort_unstable_by(|a, b| b.cmp(a));
        for &page in &empty {
            pages.release_small(page);
        }
        let keep: Vec<u64> = nodes
            .into_iter()
            .filter(|&b| on_list[&self.page_of(b)] != per_page)
            .collect();
        if let (Some(&first), Some(&last)) = (keep.first(), keep.last()) {
            for pair in keep.windows(2) {
                // Relaxed: published by the push's Release CAS.
                links.next(pair[0]).store(pair[1], Ordering::Relaxed);
            }
            let bytes = keep.len() as u64 * layout::CLASS_SIZES[class] as u64;
            self.push_or_leak(class, first, last, bytes);
        }
        if !empty.is_empty() {
            tracing::debug!(
                segment = %self.map.id(),
                class,
                pages = empty.len(),
                "gave empty size-class pages back to the page pool"
            );
        }
        empty.len() as u64
    }
}
