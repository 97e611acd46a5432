//! The workloads, one module each.

pub mod alloc;
pub mod balance;
pub mod bdev;
pub mod fire_and_forget;
pub mod idle;
pub mod module_echo;
pub mod peer;
pub mod remote;
pub mod roundtrip;
pub mod soak;
pub mod startup;
pub mod subtasks;
pub mod throughput;

/// "1 client thread", "2 client processes", …
pub fn clients_label(n: usize, processes: bool) -> String {
    match (n, processes) {
        (1, false) => "1 client thread".to_owned(),
        (n, false) => format!("{n} client threads"),
        (1, true) => "1 client process".to_owned(),
        (n, true) => format!("{n} client processes"),
    }
}
