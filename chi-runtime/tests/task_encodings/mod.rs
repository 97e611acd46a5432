//! The encodings of task fields (see chi-sdk/src/ser.rs) that
//! `fuzz_task_ser.rs` builds its inputs from: valid encodings of each kind of
//! field, and the mutations (truncations, flipped bytes, lying lengths) that
//! make them invalid.

use proptest::prelude::*;

/// How a field is encoded (see chi-sdk/src/ser.rs).
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `n` bytes of plain data, every value valid.
    Fixed(usize),
    /// `u64` length and UTF-8 bytes.
    Str,
    /// `u64` length and `u64`s.
    VecU64,
    /// `u64` length and strings.
    VecStr,
    /// `u64` length and byte vectors.
    VecBytes,
    /// A client-data buffer in: `u64` length and the bytes.
    Bytes,
    /// A client-data output buffer: `u64` length and the bytes written (the
    /// capacity does not travel).
    Buf,
}

use Kind::*;

/// The header's routing fields (`save_header_in`): flags, method, pool, task
/// node, domain query, period, client id.
pub const HEADER_IN: Kind = Fixed(4 + 4 + 8 + 16 + 8 + 8 + 4);
/// `save_header_out`: the result code, then the error message (a [`Str`]).
pub const RESULT: Kind = Fixed(4);

/// The bytes of any value of `kind`.
pub fn encode(kind: Kind) -> BoxedStrategy<Vec<u8>> {
    fn len_prefixed(n: usize, items: Vec<u8>) -> Vec<u8> {
        let mut out = (n as u64).to_le_bytes().to_vec();
        out.extend(items);
        out
    }
    fn string() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a-z_0-9]{0,12}",
            1 => any::<String>().prop_map(|s| s.chars().take(24).collect()),
        ]
    }
    match kind {
        Fixed(n) => prop::collection::vec(any::<u8>(), n).boxed(),
        Str => string()
            .prop_map(|s| len_prefixed(s.len(), s.into_bytes()))
            .boxed(),
        VecU64 => prop::collection::vec(any::<u64>(), 0..12)
            .prop_map(|v| len_prefixed(v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .boxed(),
        VecStr => prop::collection::vec(string(), 0..6)
            .prop_map(|v| {
                let n = v.len();
                let items = v
                    .into_iter()
                    .flat_map(|s| len_prefixed(s.len(), s.into_bytes()))
                    .collect();
                len_prefixed(n, items)
            })
            .boxed(),
        Bytes | Buf => prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| len_prefixed(b.len(), b))
            .boxed(),
        VecBytes => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..5)
            .prop_map(|v| {
                let n = v.len();
                let items = v
                    .into_iter()
                    .flat_map(|b| len_prefixed(b.len(), b))
                    .collect();
                len_prefixed(n, items)
            })
            .boxed(),
    }
}

/// A valid encoding of the fields `kinds`.
pub fn valid(kinds: &'static [Kind]) -> impl Strategy<Value = Vec<u8>> {
    kinds
        .iter()
        .map(|&k| encode(k))
        .collect::<Vec<_>>()
        .prop_map(|parts| parts.concat())
}

/// Edits that keep most of a valid buffer: the loader gets deep into it before
/// it meets the damage.
#[derive(Clone, Debug)]
pub enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        at: usize,
        len: usize,
    },
    /// A huge or off-by-one length written over 8 bytes.
    Length {
        at: usize,
        value: LengthValue,
    },
}

#[derive(Clone, Copy, Debug)]
pub enum LengthValue {
    Fixed(u64),
    /// What is left after the prefix, plus this.
    Remaining(i8),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    let length = prop_oneof![
        Just(LengthValue::Fixed(1 << 60)),
        Just(LengthValue::Fixed(u64::MAX)),
        Just(LengthValue::Fixed(1 << 63)),
        Just(LengthValue::Fixed(1 << 32)),
        Just(LengthValue::Fixed(1 << 16)),
        Just(LengthValue::Fixed(1 << 20)),
        Just(LengthValue::Fixed((1 << 61) + 1)),
        (-2i8..=2).prop_map(LengthValue::Remaining),
    ];
    prop_oneof![
        2 => (at, 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        2 => (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        1 => at.prop_map(|at| Mutation::Truncate { at }),
        1 => (at, prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (at, 1usize..16).prop_map(|(at, len)| Mutation::Remove { at, len }),
        3 => (at, length).prop_map(|(at, value)| Mutation::Length { at, value }),
    ]
}

pub fn mutate(mut buf: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = buf.len();
        match *m {
            Mutation::Flip { at, bit } if n > 0 => buf[at % n] ^= 1 << bit,
            Mutation::Set { at, byte } if n > 0 => buf[at % n] = byte,
            Mutation::Truncate { at } => buf.truncate(at % (n + 1)),
            Mutation::Insert { at, ref bytes } => {
                let at = at % (n + 1);
                buf.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove { at, len } if n > 0 => {
                let at = at % n;
                buf.drain(at..(at + len).min(n));
            }
            Mutation::Length { at, value } if n >= 8 => {
                let at = at % (n - 7);
                let v = match value {
                    LengthValue::Fixed(v) => v,
                    LengthValue::Remaining(d) => {
                        ((n - at - 8) as u64).wrapping_add_signed(d.into())
                    }
                };
                buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            _ => {}
        }
    }
    buf
}

/// A buffer for fields `kinds`: arbitrary bytes, a valid encoding, a damaged
/// one, or a valid one with trailing bytes.
pub fn buffer(kinds: &'static [Kind]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..300),
        2 => valid(kinds),
        4 => (valid(kinds), prop::collection::vec(mutation(), 1..4))
            .prop_map(|(buf, ms)| mutate(buf, &ms)),
        1 => (valid(kinds), prop::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(mut buf, tail)| { buf.extend(tail); buf }),
    ]
}
