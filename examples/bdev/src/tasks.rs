//! The parameters of a bdev pool, its limits, the result codes of its failures
//! and the tasks of its methods (`kAllocateBlocks` 10 … `kGetStats` 14).

use std::path::PathBuf;

use chi_sdk::bytes::{ClientBuf, ClientBytes};
use chi_sdk::shm::ShmVec;

/// The result codes of this module's failures (from
/// [`code::MODULE_BASE`](chi_sdk::task::code::MODULE_BASE)); the runtime's own
/// codes ([`chi_sdk::task::code`]) may also occur.
pub mod bdev_code {
    use chi_sdk::task::code::MODULE_BASE;

    /// Not enough free blocks (or no free run long enough).
    pub const NO_SPACE: i32 = MODULE_BASE + 1;
    /// An offset or range outside the device.
    pub const OUT_OF_RANGE: i32 = MODULE_BASE + 2;
    /// A block that is not allocated: a double free, or I/O on a free block.
    pub const NOT_ALLOCATED: i32 = MODULE_BASE + 3;
    /// The client-data buffer of an I/O is not usable.
    pub const BAD_BUFFER: i32 = MODULE_BASE + 4;
    /// The backend failed (an error of the backing file).
    pub const IO_ERROR: i32 = MODULE_BASE + 5;
    /// An argument that makes no sense (a count of zero, a misaligned offset,
    /// an unknown flag).
    pub const BAD_ARGUMENT: i32 = MODULE_BASE + 6;
}

/// The default block size (4 KiB).
pub const DEFAULT_BLOCK_SIZE: u64 = 4096;
/// The default capacity (64 MiB).
pub const DEFAULT_CAPACITY: u64 = 64 << 20;
/// Smallest block size.
pub const MIN_BLOCK_SIZE: u64 = 512;
/// Largest block size.
pub const MAX_BLOCK_SIZE: u64 = 1 << 20;
/// Most blocks a device may have (1 TiB of 4 KiB blocks; the bitmap is then
/// 32 MiB).
pub const MAX_BLOCKS: u64 = 1 << 28;
/// Most lanes of [`IO_QUEUE`](crate::runtime::IO_QUEUE).
pub const MAX_IO_LANES: u32 = 64;

/// Where a device keeps its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Memory of the container (`"ram"`).
    #[default]
    Ram,
    /// A file (`{"file": {"path": "...", "keep": false}}`), created or truncated
    /// to the capacity when the pool is created.
    File {
        /// The file's path, as the runtime sees it.
        path: PathBuf,
        /// Keep the file when the pool is destroyed (default: remove it).
        #[serde(default)]
        keep: bool,
    },
}

/// The creation parameters of a bdev pool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CreateParams {
    /// The backend.
    pub backend: Backend,
    /// Bytes of the device: a non-zero multiple of `block_size`.
    pub capacity: u64,
    /// Bytes of a block: a power of two from [`MIN_BLOCK_SIZE`] to
    /// [`MAX_BLOCK_SIZE`] (default 4 KiB).
    pub block_size: u64,
    /// Lanes of [`IO_QUEUE`](crate::runtime::IO_QUEUE) (1 to [`MAX_IO_LANES`]).
    pub io_lanes: u32,
}

impl Default for CreateParams {
    fn default() -> Self {
        CreateParams {
            backend: Backend::Ram,
            capacity: DEFAULT_CAPACITY,
            block_size: DEFAULT_BLOCK_SIZE,
            io_lanes: 4,
        }
    }
}

impl CreateParams {
    /// A RAM device of `capacity` bytes in 4 KiB blocks.
    pub fn ram(capacity: u64) -> CreateParams {
        CreateParams {
            capacity,
            ..CreateParams::default()
        }
    }

    /// A device of `capacity` bytes in 4 KiB blocks backed by the file at
    /// `path`, removed when the pool is destroyed.
    pub fn file(path: impl Into<PathBuf>, capacity: u64) -> CreateParams {
        CreateParams {
            backend: Backend::File {
                path: path.into(),
                keep: false,
            },
            capacity,
            ..CreateParams::default()
        }
    }

    /// Checks the parameters; returns the number of blocks.
    pub(crate) fn validate(&self) -> Result<u64, String> {
        let bs = self.block_size;
        if !bs.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs) {
            return Err(format!(
                "block_size {bs} is not a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}"
            ));
        }
        if self.capacity == 0 || !self.capacity.is_multiple_of(bs) {
            return Err(format!(
                "capacity {} is not a non-zero multiple of the block size {bs}",
                self.capacity
            ));
        }
        let blocks = self.capacity / bs;
        if blocks > MAX_BLOCKS {
            return Err(format!(
                "capacity {} makes {blocks} blocks of {bs} bytes; at most {MAX_BLOCKS} blocks",
                self.capacity
            ));
        }
        if !(1..=MAX_IO_LANES).contains(&self.io_lanes) {
            return Err(format!(
                "io_lanes {} is not in 1..={MAX_IO_LANES}",
                self.io_lanes
            ));
        }
        Ok(blocks)
    }
}

/// Allocates blocks (`kAllocateBlocks`).
#[chi_sdk::task(method = 10, client = false)]
#[derive(Debug)]
pub struct AllocateBlocksTask {
    /// Blocks wanted (or 0 to give `bytes`).
    pub blocks: u64,
    /// Bytes wanted, rounded up to whole blocks (or 0 to give `blocks`).
    pub bytes: u64,
    /// 1: one run of consecutive blocks; 0: any blocks.
    pub contiguous: u64,
    /// The byte offset of each block allocated.
    #[output]
    pub offsets: ShmVec<u64>,
    /// The device's block size.
    #[output]
    pub block_size: u64,
}

/// Frees blocks (`kFreeBlocks`).
#[chi_sdk::task(method = 11)]
#[derive(Debug)]
pub struct FreeBlocksTask {
    /// Byte offsets of the blocks (as `AllocateBlocks` answered them).
    pub offsets: ShmVec<u64>,
    /// Blocks freed.
    #[output]
    pub freed: u64,
}

/// Writes a client-data buffer to the device (`kWrite`).
#[chi_sdk::task(method = 12)]
#[derive(Debug)]
pub struct WriteTask {
    /// Byte offset on the device.
    pub offset: u64,
    /// The bytes to write.
    pub data: ClientBytes,
    /// Bytes written.
    #[output]
    pub written: u64,
}

/// Reads from the device into a client-data buffer (`kRead`).
#[chi_sdk::task(method = 13, client = false)]
#[derive(Debug)]
pub struct ReadTask {
    /// Byte offset on the device.
    pub offset: u64,
    /// Bytes to read.
    pub len: u64,
    /// Where they go (grown by the module if it holds fewer than `len`).
    #[inout]
    pub data: ClientBuf,
    /// Bytes read.
    #[output]
    pub read: u64,
}

/// The device's figures (`kGetStats`).
#[chi_sdk::task(method = 14, client = false)]
#[derive(Debug)]
pub struct GetStatsTask {
    /// Bytes of the device.
    #[output]
    pub capacity: u64,
    /// Bytes of a block.
    #[output]
    pub block_size: u64,
    /// Blocks of the device.
    #[output]
    pub total_blocks: u64,
    /// Blocks allocated.
    #[output]
    pub used_blocks: u64,
    /// Blocks free.
    #[output]
    pub free_blocks: u64,
    /// Bytes written by successful writes.
    #[output]
    pub bytes_written: u64,
    /// Bytes read by successful reads.
    #[output]
    pub bytes_read: u64,
    /// Successful writes.
    #[output]
    pub writes: u64,
    /// Successful reads.
    #[output]
    pub reads: u64,
    /// Successful AllocateBlocks calls.
    #[output]
    pub allocations: u64,
    /// Successful FreeBlocks calls.
    #[output]
    pub frees: u64,
    /// Calls of any method that failed.
    #[output]
    pub failures: u64,
    /// 0: RAM, 1: file.
    #[output]
    pub backend: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip_as_json_and_are_validated() {
        let p = CreateParams::file("/tmp/x", 1 << 20);
        let json = serde_json::to_string(&p).unwrap();
        assert!(
            json.contains(r#""file":{"path":"/tmp/x","keep":false}"#),
            "{json}"
        );
        let back: CreateParams = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        let ram: CreateParams = serde_json::from_str(r#"{"backend":"ram"}"#).unwrap();
        assert_eq!(ram, CreateParams::default());
        assert_eq!(CreateParams::ram(1 << 20).validate(), Ok(256));
        let bad = |f: fn(&mut CreateParams)| {
            let mut p = CreateParams::default();
            f(&mut p);
            p.validate().unwrap_err()
        };
        assert!(bad(|p| p.block_size = 3000).contains("power of two"));
        assert!(bad(|p| p.block_size = 256).contains("power of two"));
        assert!(bad(|p| p.capacity = 0).contains("non-zero multiple"));
        assert!(bad(|p| p.capacity = 4097).contains("non-zero multiple"));
        assert!(bad(|p| p.io_lanes = 0).contains("io_lanes"));
        assert!(bad(|p| p.capacity = 1 << 60).contains("at most"));
    }
}
