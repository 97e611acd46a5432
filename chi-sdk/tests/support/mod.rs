//! Helpers of chi-sdk's integration tests: a unique segment name per test, and a
//! guard that unlinks it on drop, also when the test panics ([`ShmName`], from
//! `chi-testkit`). The shared-memory layer's own tests (and their helpers) live
//! in `chi-shm/tests/`.

pub use chi_testkit::ShmName;
