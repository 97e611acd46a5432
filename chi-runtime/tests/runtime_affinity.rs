//! `workers.affinity` with real processes: a runtime whose worker and
//! supervisor threads are pinned runs tasks, each thread's kernel mask
//! (`/proc/<pid>/task/<tid>/status`, `Cpus_allowed_list`) is the list of its
//! kind, and `status` (table and JSON) shows it. (Lists naming CPUs this
//! machine does not have are refused at start: `tests/config_errors.rs`.)

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use chi_runtime::config::CpuList;
use chi_sdk::admin::AdminClient;
use chi_sdk::client::Client;
use chi_sdk::proto::StatusReport;
use chi_sdk::types::PoolId;
use support::*;

const LIMIT: Duration = Duration::from_secs(30);

/// The CPUs this test process may run on (so may the runtime it starts).
fn my_cpus() -> CpuList {
    CpuList::of_current_thread().expect("sched_getaffinity of the test")
}

/// Each thread of process `pid` by name (`comm`), with its `Cpus_allowed_list`.
fn thread_masks(pid: u32) -> BTreeMap<String, String> {
    let mut masks = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the threads") {
        let dir = entry.expect("a thread").path();
        let (Ok(comm), Ok(status)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue; // the thread exited meanwhile
        };
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list in a thread's status")
            .trim()
            .to_owned();
        masks.insert(comm.trim().to_owned(), cpus);
    }
    masks
}

/// The `workers.affinity` lines of a configuration.
fn affinity_yaml(low: &CpuList, high: &CpuList, supervisor: &CpuList) -> String {
    format!(
        "  affinity:\n    low_latency: \"{low}\"\n    high_latency: \"{high}\"\n    \
         process_reaper: \"{supervisor}\"\n"
    )
}

fn status(setup: &Setup) -> StatusReport {
    Client::status(&setup.opts()).expect("status")
}

#[test]
fn pinned_threads_run_tasks_on_the_cpus_of_their_kind() {
    let _wd = Watchdog::new("pinned_threads", Duration::from_secs(120));
    let mine = my_cpus();
    let cpus = mine.cpus();
    // Distinct lists where the machine has the CPUs: the low-latency workers
    // on the first, the high-latency worker on the last, the supervisor on
    // every CPU but the first (all of them on a one-CPU machine).
    let low = CpuList::new([cpus[0]]).unwrap();
    let high = CpuList::new([cpus[cpus.len() - 1]]).unwrap();
    let supervisor = CpuList::new(cpus.iter().copied().skip(1)).unwrap_or_else(|| mine.clone());
    let setup = Setup::with(
        "pinned_threads",
        ConfigOpts {
            low_latency: 2,
            high_latency: 1,
            workers_extra: affinity_yaml(&low, &high, &supervisor),
            ..ConfigOpts::default()
        },
    );
    let rt = RuntimeGuard::start(&setup);

    // Tasks run: synchronous and asynchronous echoes through the process
    // queue (served by the low-latency workers).
    let client = Client::connect(setup.opts()).expect("connect");
    let admin = AdminClient::new(&client);
    for i in 0..2000u64 {
        assert_eq!(admin.echo(PoolId::ADMIN, i).expect("echo"), i);
    }
    let pending: Vec<_> = (0..64u64)
        .map(|i| admin.async_echo(PoolId::ADMIN, i).expect("submit"))
        .collect();
    for (i, task) in pending.into_iter().enumerate() {
        client.wait(&task).expect("wait");
        task.result().expect("echo result");
        assert_eq!(task.get().reply, i as u64);
        client.del_task(task);
    }

    // What status says, and what the kernel says of each thread.
    let st = status(&setup);
    let done: u64 = st
        .workers
        .iter()
        .filter(|w| w.kind == "low_latency")
        .map(|w| w.tasks_completed)
        .sum();
    assert!(done >= 2064, "{st:?}");
    let masks = thread_masks(rt.pid());
    assert_eq!(st.workers.len(), 3, "{st:?}");
    for w in &st.workers {
        let want = match w.kind.as_str() {
            "low_latency" => &low,
            "high_latency" => &high,
            other => panic!("unexpected worker kind {other}"),
        };
        assert_eq!(w.cpus, want.to_string(), "status of worker {}: {w:?}", w.id);
        let name = format!("chi-worker-{}", w.id);
        let kernel = masks
            .get(&name)
            .unwrap_or_else(|| panic!("no thread {name} in {masks:?}"));
        let kernel = CpuList::parse(kernel).expect("the kernel's list");
        assert_eq!(&kernel, want, "mask of {name}");
    }
    assert_eq!(st.supervisor_cpus, supervisor.to_string(), "{st:?}");
    let kernel = CpuList::parse(&masks["chi-supervisor"]).unwrap();
    assert_eq!(kernel, supervisor);
    // The threads not configured keep the process's CPUs (the main thread).
    let main = CpuList::parse(&masks["chi-runtime"]).unwrap();
    assert_eq!(main, mine);

    // The table shows each worker's CPUs and the supervisor's.
    let cfg = setup.config.to_str().unwrap();
    let out = run_cli(runtime_exe(), &["status", "-c", cfg], &[], LIMIT);
    assert!(out.status.success(), "{out}");
    assert!(out.stdout.contains(&format!("cpus {low}")), "{out}");
    assert!(
        out.stdout.contains(&format!(
            "supervisor (worker watch, process reaper): cpus {supervisor}"
        )),
        "{out}"
    );
    drop(client);
    rt.stop();
}

#[test]
fn unpinned_threads_show_the_cpus_of_the_process() {
    let _wd = Watchdog::new("unpinned_threads", Duration::from_secs(120));
    let setup = Setup::new("unpinned_threads");
    let rt = RuntimeGuard::start(&setup);
    let st = status(&setup);
    let mine = my_cpus().to_string();
    assert!(!st.workers.is_empty());
    for w in &st.workers {
        assert_eq!(w.cpus, mine, "{w:?}");
    }
    assert_eq!(st.supervisor_cpus, mine);
    rt.stop();
}
