//! The container of a kv pool: an ordered map behind a lock.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chi_sdk::abi::RunCtx;
use chi_sdk::container::{CreateCtx, main_allocator};
use chi_sdk::shm::ShmVec;
use chi_sdk::task::Failure;

use crate::tasks::*;

/// The store of one pool.
#[derive(Debug)]
pub struct KvContainer {
    params: CreateParams,
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

/// A failure with a module code.
fn fail(code: i32, message: impl Into<String>) -> Failure {
    Failure::new(code, message.into())
}

#[chi_sdk::chimod]
impl KvContainer {
    /// `kCreate`: an empty store.
    fn create(_ctx: &mut CreateCtx<'_>, params: CreateParams) -> Result<Self, String> {
        Ok(KvContainer {
            params,
            map: Mutex::new(BTreeMap::new()),
        })
    }

    /// `kPut`.
    fn put(&self, task: &mut PutTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
        let (key, value) = (task.key.get()?, task.value.get()?);
        let max = self.params.max_value;
        if max != 0 && value.len() as u64 > max {
            let msg = format!(
                "a value of {} bytes; this pool holds at most {max}",
                value.len()
            );
            return Err(fail(errcode::TOO_LARGE, msg));
        }
        let old = self.lock().insert(key.to_vec(), value.to_vec());
        task.replaced = u64::from(old.is_some());
        Ok(())
    }

    /// `kGet`.
    fn get(&self, task: &mut GetTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
        let key = task.key.get()?;
        let map = self.lock();
        let value = map.get(&*key).ok_or_else(|| not_found(&key))?;
        task.value.get_mut()?.write(value)
    }

    /// `kDelete`.
    fn delete(&self, task: &mut DeleteTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
        let key = task.key.get()?;
        let old = self.lock().remove(&*key).ok_or_else(|| not_found(&key))?;
        task.freed = old.len() as u64;
        Ok(())
    }

    /// `kScan`: the keys go to the runtime's main segment; the client frees
    /// them with the task.
    fn scan(&self, task: &mut ScanTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
        let prefix = task.prefix.get()?;
        let limit = if task.limit == 0 {
            usize::MAX
        } else {
            task.limit as usize
        };
        let alloc = main_allocator().map_err(|e| e.to_string())?;
        let map = self.lock();
        let keys = map.range(prefix.to_vec()..).map(|(k, _)| k);
        for k in keys.take_while(|k| k.starts_with(&prefix)).take(limit) {
            let key = ShmVec::from_slice(alloc, k).map_err(|e| e.to_string())?;
            task.keys.push(alloc, key).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// `kStats`.
    fn stats(&self, task: &mut StatsTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
        let map = self.lock();
        task.keys = map.len() as u64;
        task.bytes = map.values().map(|v| v.len() as u64).sum();
        Ok(())
    }
}

impl KvContainer {
    /// The map (a panicking handler cannot leave it half-changed: each
    /// change is one call on it).
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The failure of a missing key.
fn not_found(key: &[u8]) -> Failure {
    fail(
        errcode::NOT_FOUND,
        format!("no key {:?}", String::from_utf8_lossy(key)),
    )
}
