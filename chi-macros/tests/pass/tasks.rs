//! Tasks the macro accepts, used as a module author would.

use chi_sdk::ser::TaskSer;
use chi_sdk::shm::{ShmPtr, ShmString, ShmVec};
use chi_sdk::task::Task;
use chi_sdk::types::{DomainQuery, PoolId, TaskNode};
use chi_sdk::task;

/// The seed's custom task.
#[task(method = 10, yaml = "../chimaera_mod.yaml")]
#[derive(Debug)]
pub struct CustomTask {
    /// In and out.
    #[inout]
    pub data: ShmString,
    /// In.
    pub operation_id: u32,
    /// Out.
    #[output]
    pub result_code: u32,
}

/// Every kind of field type that may live in shared memory.
#[chi_sdk::task(method = 11, name = "kPing", yaml = "../chimaera_mod.yaml")]
pub(crate) struct Everything {
    pub a: u8,
    pub(crate) b: i128,
    c: f64,
    d: [u64; 4],
    e: ShmVec<ShmVec<ShmString>>,
    f: [ShmString; 2],
    g: ShmPtr,
    h: TaskNode,
    i: DomainQuery,
    j: std::sync::atomic::AtomicU32,
    #[output]
    k: usize,
}

/// No parameters.
#[task(method = 12, yaml = "../chimaera_mod.yaml")]
struct StopTask;

fn main() {
    assert_eq!(<CustomTask as Task>::METHOD, 10);
    let t = CustomTask::new(PoolId(9), DomainQuery::local(), ShmString::new(), 5);
    assert_eq!(t.header().pool_id, PoolId(9));
    let mut buf = Vec::new();
    t.save_in(&mut buf).unwrap();
    assert!(format!("{t:?}").contains("operation_id: 5"));

    let e = Everything::empty(PoolId(1));
    assert_eq!((e.a, e.b, e.c, e.k), (0, 0, 0.0, 0));
    let _ = (&e.d, &e.e, &e.f, &e.g, &e.h, &e.i, &e.j);
    assert_eq!(<Everything as Task>::METHOD, 11);
    assert_eq!(StopTask::new(PoolId(1), DomainQuery::local()).header.method, 12);
}
