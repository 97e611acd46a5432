//! A task with one field of a rejected type, used as a module's client and
//! runtime use it: the field's error is the only one (the struct keeps its
//! impls and constructors).

use chi_sdk::ser::TaskSer;
use chi_sdk::shm::ShmString;
use chi_sdk::task::Task;
use chi_sdk::types::{DomainQuery, PoolId};

#[chi_sdk::task(method = 10, yaml = "../chimaera_mod.yaml")]
#[derive(Debug)]
pub struct CustomTask {
    #[inout]
    pub data: ShmString,
    pub name: String,
    #[output]
    pub result_code: u32,
}

fn main() {
    assert_eq!(<CustomTask as Task>::METHOD, 10);
    let t = CustomTask::new(PoolId(9), DomainQuery::local(), ShmString::new(), String::new());
    let mut buf = Vec::new();
    t.save_in(&mut buf).unwrap();
    let e = CustomTask::empty(PoolId(1));
    let _ = (e.header(), &e.name, e.result_code);
}
