//! The key of a worker's pool table.

/// The hasher of a worker's pool table: pool ids are small integers chosen by
/// the runtime, so a multiplicative hash is enough (and costs a multiply, where
/// the default hasher costs tens of nanoseconds per task).
#[derive(Default, Debug)]
pub struct PoolIdHasher(u64);

impl std::hash::Hasher for PoolIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}
