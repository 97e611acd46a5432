//! The compressed frame: what Compress writes and Decompress reads.
//!
//! A frame is a 20-byte header followed by the payload:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..4 | magic `CHZ1` |
//! | 4 | algorithm: [`ALGO_STORED`] 0, [`ALGO_LZ4`] 1, [`ALGO_DEFLATE`] 2 |
//! | 5 | DEFLATE level used (0 for the other algorithms) |
//! | 6..8 | reserved, zero |
//! | 8..16 | length of the original data, `u64` little-endian |
//! | 16..20 | CRC-32 (IEEE) of the original data, `u32` little-endian |
//! | 20.. | payload: an LZ4 block, a raw DEFLATE stream, or the data itself |
//!
//! [`encode`] falls back to a stored frame when the codec does not make the
//! data smaller, so a frame is never longer than [`max_frame_len`] of its data
//! (the data plus the header): a buffer that long always holds it.
//!
//! Everything in a frame handed to [`decode_into`] is untrusted: the header
//! is checked before any byte is written, the payload's codec stops at the
//! end of the output, and the result must have the declared length and
//! checksum. No function here allocates memory in proportion to a length read
//! from a frame.
//!
//! These functions are plain Rust (no runtime needed): the module's handlers
//! use them, and so can a client that wants to check a frame locally.

use std::fmt;

/// The frame's magic number.
pub const MAGIC: [u8; 4] = *b"CHZ1";
/// Length of the frame header.
pub const HEADER_LEN: usize = 20;
/// Algorithm id: the payload is the data itself.
pub const ALGO_STORED: u8 = 0;
/// Algorithm id: the payload is an LZ4 block.
pub const ALGO_LZ4: u8 = 1;
/// Algorithm id: the payload is a raw DEFLATE stream.
pub const ALGO_DEFLATE: u8 = 2;
/// The highest DEFLATE level.
pub const MAX_LEVEL: u8 = 10;

/// The compression algorithms a pool can use.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// LZ4 block format (fast; `lz4_flex`).
    #[default]
    Lz4,
    /// DEFLATE (smaller output, slower; `miniz_oxide`), at the pool's level.
    Deflate,
}

impl Codec {
    /// The frame's algorithm id for this codec.
    pub const fn algorithm(self) -> u8 {
        match self {
            Codec::Lz4 => ALGO_LZ4,
            Codec::Deflate => ALGO_DEFLATE,
        }
    }

    /// The codec of a frame algorithm id (not [`ALGO_STORED`]).
    pub const fn from_algorithm(id: u8) -> Option<Codec> {
        match id {
            ALGO_LZ4 => Some(Codec::Lz4),
            ALGO_DEFLATE => Some(Codec::Deflate),
            _ => None,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Lz4 => "lz4",
            Codec::Deflate => "deflate",
        })
    }
}

/// The name of a frame algorithm id.
pub fn algorithm_name(id: u8) -> &'static str {
    match id {
        ALGO_STORED => "stored",
        ALGO_LZ4 => "lz4",
        ALGO_DEFLATE => "deflate",
        _ => "unknown",
    }
}

/// The longest frame `len` bytes of data can give: a buffer of this length
/// always holds the frame of `len` bytes.
pub const fn max_frame_len(len: usize) -> usize {
    len.saturating_add(HEADER_LEN)
}

/// What a frame's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Algorithm id ([`ALGO_STORED`], [`ALGO_LZ4`], [`ALGO_DEFLATE`]).
    pub algorithm: u8,
    /// DEFLATE level used (0 otherwise).
    pub level: u8,
    /// Length of the original data.
    pub original_len: u64,
    /// CRC-32 of the original data.
    pub crc32: u32,
}

/// Why a frame cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Shorter than a header.
    TooShort {
        /// Its length.
        len: usize,
    },
    /// Does not start with [`MAGIC`].
    BadMagic {
        /// Its first bytes.
        found: [u8; 4],
    },
    /// Names an algorithm this module does not know.
    UnknownAlgorithm {
        /// The id.
        id: u8,
    },
    /// Reserved header bytes are not zero.
    Reserved {
        /// Their value.
        value: u16,
    },
    /// The original data does not fit in this process's address space.
    TooLong {
        /// The declared length.
        original_len: u64,
    },
    /// A stored frame whose payload length differs from the declared length.
    StoredLength {
        /// The declared length.
        original_len: u64,
        /// The payload's length.
        payload_len: usize,
    },
    /// The output buffer is shorter than the original data.
    OutputTooSmall {
        /// The buffer's length.
        capacity: usize,
        /// The original data's length.
        needed: u64,
    },
    /// The codec rejected the payload.
    Corrupt {
        /// The algorithm.
        algorithm: u8,
        /// The codec's message.
        detail: String,
    },
    /// The payload decoded to another length than declared.
    LengthMismatch {
        /// The declared length.
        original_len: u64,
        /// The decoded length.
        decoded: usize,
    },
    /// The decoded data's checksum differs from the header's.
    Checksum {
        /// The header's CRC-32.
        expected: u32,
        /// The decoded data's CRC-32.
        found: u32,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooShort { len } => write!(
                f,
                "not a compressed frame: {len} bytes, shorter than the {HEADER_LEN}-byte header"
            ),
            FrameError::BadMagic { found } => write!(
                f,
                "not a compressed frame: it starts with {found:02x?}, not the magic \"CHZ1\""
            ),
            FrameError::UnknownAlgorithm { id } => write!(
                f,
                "corrupt frame: unknown algorithm id {id} (known: 0 stored, 1 lz4, 2 deflate)"
            ),
            FrameError::Reserved { value } => write!(
                f,
                "corrupt frame: reserved header bytes are {value:#06x}, not zero"
            ),
            FrameError::TooLong { original_len } => write!(
                f,
                "corrupt frame: declares {original_len} bytes of data, more than this process \
                 can address"
            ),
            FrameError::StoredLength {
                original_len,
                payload_len,
            } => write!(
                f,
                "corrupt frame: stored payload of {payload_len} bytes, the header declares \
                 {original_len}"
            ),
            FrameError::OutputTooSmall { capacity, needed } => write!(
                f,
                "the output buffer holds {capacity} bytes; the decompressed data needs {needed}"
            ),
            FrameError::Corrupt { algorithm, detail } => write!(
                f,
                "corrupt frame: the {} payload does not decode: {detail}",
                algorithm_name(*algorithm)
            ),
            FrameError::LengthMismatch {
                original_len,
                decoded,
            } => write!(
                f,
                "corrupt frame: the payload decodes to {decoded} bytes, the header declares \
                 {original_len}"
            ),
            FrameError::Checksum { expected, found } => write!(
                f,
                "corrupt frame: checksum mismatch (header CRC-32 {expected:#010x}, decoded data \
                 {found:#010x})"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads and checks the header of `frame` (not the payload).
pub fn header(frame: &[u8]) -> Result<Header, FrameError> {
    let Some(h) = frame.first_chunk::<HEADER_LEN>() else {
        return Err(FrameError::TooShort { len: frame.len() });
    };
    let magic = [h[0], h[1], h[2], h[3]];
    if magic != MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    let algorithm = h[4];
    if algorithm > ALGO_DEFLATE {
        return Err(FrameError::UnknownAlgorithm { id: algorithm });
    }
    let reserved = u16::from_le_bytes([h[6], h[7]]);
    if reserved != 0 {
        return Err(FrameError::Reserved { value: reserved });
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&h[8..16]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&h[16..20]);
    Ok(Header {
        algorithm,
        level: h[5],
        original_len: u64::from_le_bytes(len),
        crc32: u32::from_le_bytes(crc),
    })
}

fn write_header(out: &mut Vec<u8>, algorithm: u8, level: u8, data: &[u8], crc: u32) {
    out.extend_from_slice(&MAGIC);
    out.push(algorithm);
    out.push(level);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The frame of `data` compressed with `codec` (DEFLATE at `level`, clamped to
/// [`MAX_LEVEL`]), or a stored frame if that is not larger.
///
/// DEFLATE's compressor holds a 64 KiB buffer inline: call this on a thread
/// with a normal stack, not on a small coroutine stack.
pub fn encode(data: &[u8], codec: Codec, level: u8) -> Vec<u8> {
    let crc = crc32fast::hash(data);
    let (payload, level) = match codec {
        Codec::Lz4 => (lz4_flex::block::compress(data), 0),
        Codec::Deflate => {
            let level = level.min(MAX_LEVEL);
            (miniz_oxide::deflate::compress_to_vec(data, level), level)
        }
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len().min(data.len()));
    if payload.len() < data.len() {
        write_header(&mut out, codec.algorithm(), level, data, crc);
        out.extend_from_slice(&payload);
    } else {
        write_header(&mut out, ALGO_STORED, 0, data, crc);
        out.extend_from_slice(data);
    }
    out
}

/// Decodes `frame` into the start of `out`; returns the original data's length.
/// `out` must hold at least the header's `original_len` bytes (else
/// [`FrameError::OutputTooSmall`], before anything is written).
///
/// DEFLATE's decompressor keeps about 11 KiB of state on the stack.
pub fn decode_into(frame: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
    let h = header(frame)?;
    let n = usize::try_from(h.original_len).map_err(|_| FrameError::TooLong {
        original_len: h.original_len,
    })?;
    if n > out.len() {
        return Err(FrameError::OutputTooSmall {
            capacity: out.len(),
            needed: h.original_len,
        });
    }
    let payload = &frame[HEADER_LEN..];
    let out = &mut out[..n];
    let decoded = match h.algorithm {
        ALGO_STORED => {
            if payload.len() != n {
                return Err(FrameError::StoredLength {
                    original_len: h.original_len,
                    payload_len: payload.len(),
                });
            }
            out.copy_from_slice(payload);
            n
        }
        ALGO_LZ4 => {
            lz4_flex::block::decompress_into(payload, out).map_err(|e| FrameError::Corrupt {
                algorithm: h.algorithm,
                detail: e.to_string(),
            })?
        }
        _ => miniz_oxide::inflate::decompress_slice_iter_to_slice(
            out,
            std::iter::once(payload),
            false,
            true,
        )
        .map_err(|status| FrameError::Corrupt {
            algorithm: h.algorithm,
            detail: match status {
                miniz_oxide::inflate::TINFLStatus::HasMoreOutput => {
                    format!("it decodes to more than the declared {n} bytes")
                }
                other => format!("{other:?}"),
            },
        })?,
    };
    if decoded != n {
        return Err(FrameError::LengthMismatch {
            original_len: h.original_len,
            decoded,
        });
    }
    let found = crc32fast::hash(out);
    if found != h.crc32 {
        return Err(FrameError::Checksum {
            expected: h.crc32,
            found,
        });
    }
    Ok(n)
}

/// Decodes `frame` into a new vector (for clients checking a frame locally).
/// The vector is sized from the header: check it with [`header`] first if the
/// frame is untrusted and may declare an absurd length.
pub fn decode(frame: &[u8]) -> Result<Vec<u8>, FrameError> {
    let h = header(frame)?;
    let n = usize::try_from(h.original_len).map_err(|_| FrameError::TooLong {
        original_len: h.original_len,
    })?;
    let mut out = vec![0; n];
    decode_into(frame, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Vec<u8> {
        b"the quick brown fox jumps over the lazy dog; "
            .iter()
            .copied()
            .cycle()
            .take(n)
            .collect()
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn round_trips_every_codec_and_size() {
        for codec in [Codec::Lz4, Codec::Deflate] {
            for data in [Vec::new(), vec![7], text(100_000), noise(10_000)] {
                let f = encode(&data, codec, 6);
                assert!(
                    f.len() <= max_frame_len(data.len()),
                    "{codec} {}",
                    data.len()
                );
                assert_eq!(decode(&f).unwrap(), data, "{codec} {}", data.len());
                let h = header(&f).unwrap();
                assert_eq!(h.original_len, data.len() as u64);
            }
        }
    }

    #[test]
    fn compressible_data_shrinks_and_noise_is_stored() {
        let f = encode(&text(100_000), Codec::Lz4, 0);
        assert_eq!(f[4], ALGO_LZ4);
        assert!(f.len() < 5_000, "{}", f.len());
        let f = encode(&text(100_000), Codec::Deflate, 9);
        assert_eq!((f[4], f[5]), (ALGO_DEFLATE, 9));
        assert!(f.len() < 2_000, "{}", f.len());
        let f = encode(&noise(4096), Codec::Deflate, 6);
        assert_eq!(f[4], ALGO_STORED);
        assert_eq!(f.len(), max_frame_len(4096));
    }

    #[test]
    fn bad_frames_are_refused_with_their_reason() {
        let data = text(10_000);
        let good = encode(&data, Codec::Lz4, 0);
        let mut out = vec![0; data.len()];

        assert!(matches!(
            decode_into(&good[..10], &mut out),
            Err(FrameError::TooShort { len: 10 })
        ));
        let e = decode_into(&noise(100), &mut out).unwrap_err();
        assert!(e.to_string().contains("not a compressed frame"), "{e}");

        let mut f = good.clone();
        f[4] = 9;
        assert_eq!(
            decode_into(&f, &mut out),
            Err(FrameError::UnknownAlgorithm { id: 9 })
        );

        let e = decode_into(&good, &mut out[..100]).unwrap_err();
        assert_eq!(
            e,
            FrameError::OutputTooSmall {
                capacity: 100,
                needed: 10_000
            }
        );
        assert!(e.to_string().contains("needs 10000"), "{e}");

        // A flipped checksum, a corrupted payload, a wrong length.
        let mut f = good.clone();
        f[16] ^= 1;
        assert!(matches!(
            decode_into(&f, &mut out),
            Err(FrameError::Checksum { .. })
        ));
        let mut f = good.clone();
        let last = f.len() - 1;
        f[HEADER_LEN..last].iter_mut().for_each(|b| *b ^= 0x5a);
        assert!(decode_into(&f, &mut out).is_err());
        let mut f = good.clone();
        f[8..16].copy_from_slice(&9_000u64.to_le_bytes());
        assert!(decode_into(&f, &mut out).is_err());

        // Corrupted DEFLATE payloads fail too, whatever the damage.
        let good = encode(&data, Codec::Deflate, 6);
        for i in HEADER_LEN..good.len() {
            let mut f = good.clone();
            f[i] ^= 0xff;
            assert!(decode_into(&f, &mut out).is_err(), "byte {i}");
        }
    }
}
