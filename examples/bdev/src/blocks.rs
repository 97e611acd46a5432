//! The block allocator: one bit per block (set = allocated), searched next-fit
//! from a cursor so consecutive allocations take consecutive blocks and a
//! freed block is reused only after the cursor comes round again.
//!
//! Full 64-block words are skipped whole, so a scan costs about one word read
//! per 64 blocks. Frees are validated before anything changes: a list with an
//! out-of-range, unallocated or repeated block frees nothing.

/// Why an allocation or a free was refused (block indices, not offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlockError {
    /// Not enough free blocks (or no free run long enough).
    NoSpace {
        /// Blocks asked for.
        wanted: u64,
        /// Free blocks.
        free: u64,
        /// Whether a contiguous run was asked for.
        contiguous: bool,
    },
    /// A block index past the device.
    OutOfRange {
        /// The block.
        block: u64,
    },
    /// A block that is not allocated.
    NotAllocated {
        /// The block.
        block: u64,
    },
    /// A block named twice in one free.
    Repeated {
        /// The block.
        block: u64,
    },
}

/// The allocation bitmap of a device of `total` blocks.
#[derive(Debug)]
pub(crate) struct BlockMap {
    words: Vec<u64>,
    total: u64,
    used: u64,
    cursor: u64,
}

impl BlockMap {
    /// A map of `total` free blocks (an error, not an abort, if the memory
    /// for the bitmap cannot be had).
    pub(crate) fn new(total: u64) -> Result<BlockMap, String> {
        let n = usize::try_from(total.div_ceil(64)).map_err(|e| e.to_string())?;
        let mut words = Vec::new();
        words
            .try_reserve_exact(n)
            .map_err(|e| format!("no memory for the bitmap of {total} blocks: {e}"))?;
        words.resize(n, 0);
        Ok(BlockMap {
            words,
            total,
            used: 0,
            cursor: 0,
        })
    }

    /// Blocks allocated.
    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    /// Blocks of the device.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    fn get(&self, block: u64) -> bool {
        self.words[(block / 64) as usize] & (1 << (block % 64)) != 0
    }

    fn set(&mut self, block: u64, on: bool) {
        let w = &mut self.words[(block / 64) as usize];
        if on {
            *w |= 1 << (block % 64);
        } else {
            *w &= !(1 << (block % 64));
        }
    }

    /// Whether every block of `first..=last` is allocated; else the first that
    /// is not (or is past the device).
    pub(crate) fn check_allocated(&self, first: u64, last: u64) -> Result<(), BlockError> {
        if last >= self.total {
            return Err(BlockError::OutOfRange { block: last });
        }
        match (first..=last).find(|&b| !self.get(b)) {
            Some(block) => Err(BlockError::NotAllocated { block }),
            None => Ok(()),
        }
    }

    /// Allocates `count` blocks anywhere; returns their indices in the order
    /// found (ascending from the cursor, wrapping round once).
    pub(crate) fn allocate(&mut self, count: u64) -> Result<Vec<u64>, BlockError> {
        let free = self.total - self.used;
        if count > free {
            return Err(BlockError::NoSpace {
                wanted: count,
                free,
                contiguous: false,
            });
        }
        let mut out = Vec::with_capacity(count as usize);
        let mut b = self.cursor;
        while (out.len() as u64) < count {
            if b >= self.total {
                b = 0;
            }
            let w = (b / 64) as usize;
            if b.is_multiple_of(64) && self.words[w] == u64::MAX {
                b += 64;
                continue;
            }
            if !self.get(b) {
                self.set(b, true);
                out.push(b);
            }
            b += 1;
        }
        self.used += count;
        self.cursor = if b >= self.total { 0 } else { b };
        Ok(out)
    }

    /// The first run of `count` free blocks in `from..to`.
    fn find_run(&self, from: u64, to: u64, count: u64) -> Option<u64> {
        let mut start = from;
        let mut b = from;
        while b < to {
            if b.is_multiple_of(64) && b + 64 <= to && self.words[(b / 64) as usize] == u64::MAX {
                b += 64;
                start = b;
                continue;
            }
            b += 1;
            if self.get(b - 1) {
                start = b;
            } else if b - start == count {
                return Some(start);
            }
        }
        None
    }

    /// Allocates `count` consecutive blocks; returns the first.
    pub(crate) fn allocate_run(&mut self, count: u64) -> Result<u64, BlockError> {
        let free = self.total - self.used;
        let no_space = BlockError::NoSpace {
            wanted: count,
            free,
            contiguous: true,
        };
        if count == 0 || count > free {
            return Err(no_space);
        }
        let first = self
            .find_run(self.cursor, self.total, count)
            .or_else(|| self.find_run(0, self.total, count))
            .ok_or(no_space)?;
        for b in first..first + count {
            self.set(b, true);
        }
        self.used += count;
        self.cursor = if first + count >= self.total {
            0
        } else {
            first + count
        };
        Ok(first)
    }

    /// Frees `blocks`: all of them, or (on an error naming the first bad block)
    /// none.
    pub(crate) fn free(&mut self, blocks: &[u64]) -> Result<(), BlockError> {
        let mut sorted = blocks.to_vec();
        sorted.sort_unstable();
        for (i, &block) in sorted.iter().enumerate() {
            if block >= self.total {
                return Err(BlockError::OutOfRange { block });
            }
            if i > 0 && sorted[i - 1] == block {
                return Err(BlockError::Repeated { block });
            }
            if !self.get(block) {
                return Err(BlockError::NotAllocated { block });
            }
        }
        for &b in &sorted {
            self.set(b, false);
        }
        self.used -= sorted.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_every_block_then_refuses() {
        let mut m = BlockMap::new(130).unwrap();
        let a = m.allocate(100).unwrap();
        assert_eq!(a, (0..100).collect::<Vec<_>>());
        let b = m.allocate(30).unwrap();
        assert_eq!(b, (100..130).collect::<Vec<_>>());
        assert_eq!(m.used(), 130);
        assert_eq!(
            m.allocate(1),
            Err(BlockError::NoSpace {
                wanted: 1,
                free: 0,
                contiguous: false
            })
        );
        m.free(&[5, 70, 129]).unwrap();
        let mut c = m.allocate(3).unwrap();
        c.sort_unstable();
        assert_eq!(c, vec![5, 70, 129]);
    }

    #[test]
    fn frees_are_validated_all_or_nothing() {
        let mut m = BlockMap::new(64).unwrap();
        m.allocate(10).unwrap();
        assert_eq!(m.free(&[1, 2, 2]), Err(BlockError::Repeated { block: 2 }));
        assert_eq!(m.free(&[1, 64]), Err(BlockError::OutOfRange { block: 64 }));
        assert_eq!(
            m.free(&[1, 20]),
            Err(BlockError::NotAllocated { block: 20 })
        );
        assert_eq!(m.used(), 10);
        m.free(&[1, 2]).unwrap();
        assert_eq!(m.free(&[1]), Err(BlockError::NotAllocated { block: 1 }));
        assert_eq!(m.used(), 8);
        assert!(m.check_allocated(3, 9).is_ok());
        assert_eq!(
            m.check_allocated(0, 2),
            Err(BlockError::NotAllocated { block: 1 })
        );
        assert_eq!(
            m.check_allocated(9, 64),
            Err(BlockError::OutOfRange { block: 64 })
        );
    }

    #[test]
    fn runs_are_contiguous_and_skip_holes() {
        let mut m = BlockMap::new(256).unwrap();
        let all = m.allocate(200).unwrap();
        // Holes of 1, 3 and 70 blocks.
        m.free(&[10]).unwrap();
        m.free(&[20, 21, 22]).unwrap();
        let big: Vec<u64> = (100..170).collect();
        m.free(&big).unwrap();
        m.cursor = 0;
        assert_eq!(m.allocate_run(3).unwrap(), 20);
        assert_eq!(m.allocate_run(64).unwrap(), 100);
        assert_eq!(m.allocate_run(1).unwrap(), 164);
        // 5 blocks left in 165..170, then 200..256 after the allocated ones.
        assert_eq!(m.allocate_run(6).unwrap(), 200);
        assert_eq!(m.allocate_run(50).unwrap(), 206);
        assert!(matches!(
            m.allocate_run(7),
            Err(BlockError::NoSpace {
                contiguous: true,
                ..
            })
        ));
        assert_eq!(m.allocate_run(5).unwrap(), 165);
        assert_eq!(m.allocate_run(1).unwrap(), 10);
        assert_eq!(m.used(), 256);
        assert_eq!(all.len(), 200);
    }

    #[test]
    fn next_fit_wraps_round() {
        let mut m = BlockMap::new(8).unwrap();
        assert_eq!(m.allocate(6).unwrap(), vec![0, 1, 2, 3, 4, 5]);
        m.free(&[0, 1]).unwrap();
        assert_eq!(m.allocate(3).unwrap(), vec![6, 7, 0]);
        assert_eq!(m.allocate_run(1).unwrap(), 1);
        assert_eq!(m.total(), 8);
    }
}
