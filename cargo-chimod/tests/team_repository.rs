//! A repository as a team has it: committed, cloned elsewhere and built
//! there; its example method replaced; and its tests refusing a library that
//! is not the one cargo just built. Each test builds one repository with plain
//! cargo, outside this workspace (see `support`), with a module name of its
//! own (repositories share the target directory).

mod support;

use std::path::Path;

use support::*;

fn git(dir: &Path, args: &[&str]) -> String {
    let mut all = vec![
        "-c",
        "user.name=chimod test",
        "-c",
        "user.email=chimod@test.invalid",
        "-c",
        "init.defaultBranch=main",
    ];
    all.extend_from_slice(args);
    run_ok(dir, "git", &all)
}

/// "A repository made by `cargo chimod new`, committed and cloned to another
/// directory, builds and passes its test there": no committed file names a
/// directory of the machine, and the clone finds chi-sdk and chi-runtime
/// through `cargo chimod link`.
#[test]
fn a_committed_repository_builds_and_passes_in_a_clone() {
    let scratch = Scratch::new("clone");
    let origin = scratch.path().join("origin");
    chimod(scratch.path(), &["new", "origin", "--module", "cloned"]).ok();
    git(&origin, &["init", "-q"]);
    git(&origin, &["add", "-A"]);
    git(&origin, &["commit", "-q", "-m", "a new module repository"]);

    // What is committed names no directory of this machine.
    let committed = git(&origin, &["ls-files"]);
    assert!(
        committed.contains("chimaera_methods.lock") && !committed.contains(".cargo/config.toml"),
        "{committed}"
    );
    for dir in [workspace(), scratch.path()] {
        let dir = dir.canonicalize().unwrap();
        for needle in [dir.to_str().unwrap(), scratch.path().to_str().unwrap()] {
            let hits = std::process::Command::new("git")
                .args(["grep", "-n", "-F", needle])
                .current_dir(&origin)
                .output()
                .unwrap();
            assert!(
                hits.stdout.is_empty(),
                "committed files name {needle}:\n{}",
                String::from_utf8_lossy(&hits.stdout)
            );
        }
    }

    // Clone it elsewhere: without a link, nothing says where chi-sdk is.
    let elsewhere = Scratch::new("clone-elsewhere");
    git(
        elsewhere.path(),
        &["clone", "-q", origin.to_str().unwrap(), "team"],
    );
    let clone = elsewhere.path().join("team");
    assert!(!clone.join(".cargo").exists());
    let out = chimod(
        &clone,
        &[
            "link",
            workspace().to_str().unwrap(),
            "--runtime-bin",
            runtime_bin().to_str().unwrap(),
        ],
    )
    .ok();
    assert!(
        out.contains("linked") && out.contains("which git ignores"),
        "{out}"
    );
    let status = git(&clone, &["status", "--porcelain"]);
    assert!(status.is_empty(), "link left changes to commit:\n{status}");

    // The tests take chi-runtime from the link (no CHI_RUNTIME_BIN here).
    pin_dependencies(&clone);
    let out = cargo_no_runtime_env(&clone, &["test"]).ok();
    for test in [
        "a_running_runtime_creates_and_destroys_pools",
        "a_running_runtime_answers_greet",
        "two_runtimes_answer_side_by_side",
    ] {
        assert!(out.contains(&format!("test {test} ... ok")), "{out}");
    }
}

/// The example method replaced by the author's, with `remove-method`; then a
/// library that is not what cargo just built is refused by the tests.
#[test]
fn the_example_method_is_replaced_and_a_stale_library_is_refused() {
    let scratch = Scratch::new("replace");
    let repo = scratch.path().join("r");
    chimod(scratch.path(), &["new", "r", "--module", "swapped"]).ok();
    let out = chimod(&repo, &["remove-method", "kGreet", "--forget-id"]).ok();
    for want in [
        "its line in swapped/chimaera_mod.yaml",
        "task struct GreetTask",
        "fn greet, fn monitor_greet",
        "the program swapped/examples/swapped_call.rs (it calls `greet`",
        "test a_running_runtime_answers_greet",
        "its id 10 in chimaera_methods.lock",
    ] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
    // The id is free: the author's first method takes it.
    append(&repo.join("swapped/chimaera_mod.yaml"), "kMine: 10\n");
    let out = chimod(&repo, &["refresh"]).ok();
    assert!(out.contains("new method kMine (id 10)"), "{out}");
    for file in [
        "src/tasks.rs",
        "src/runtime.rs",
        "src/client.rs",
        "tests/swapped.rs",
    ] {
        let text = read(&repo.join("swapped").join(file));
        for gone in ["struct GreetTask", "fn greet(", ".greet(", "GreetTask::new"] {
            assert!(!text.contains(gone), "{file} has {gone}:\n{text}");
        }
    }
    pin_dependencies(&repo);
    let out = cargo(&repo, &["test"]).ok();
    assert!(
        out.contains("test a_running_runtime_creates_and_destroys_pools ... ok"),
        "{out}"
    );

    // Without "cdylib", cargo builds no library for the runtime: the test says so.
    let manifest = repo.join("swapped/Cargo.toml");
    let original = read(&manifest);
    write(
        &manifest,
        &original.replace(
            "crate-type = [\"cdylib\", \"rlib\"]",
            "crate-type = [\"rlib\"]",
        ),
    );
    let run = cargo(&repo, &["test"]);
    run.fails();
    let out = run.stdout();
    assert!(
        out.contains("does not build libchimaera_swapped_runtime.so")
            && out.contains("put crate-type = [\"cdylib\", \"rlib\"] under [lib]"),
        "{out}"
    );
    // Nor does install copy the library an earlier build left.
    let dest = scratch.path().join("installed");
    let err = chimod(&repo, &["install", "--dest", dest.to_str().unwrap()]).fails();
    assert!(
        err.contains("crate-type does not list \"cdylib\"") && !dest.exists(),
        "{err}"
    );
    write(&manifest, &original);
    cargo(&repo, &["test"]).ok();

    // A library older than the sources (left from an earlier build) is refused.
    let lib = deps_dir().join("libchimaera_swapped_runtime.so");
    run_ok(
        scratch.path(),
        "touch",
        &["-d", "2000-01-01", lib.to_str().unwrap()],
    );
    let run = cargo(&repo, &["test"]);
    run.fails();
    let out = run.stdout();
    assert!(
        out.contains("libchimaera_swapped_runtime.so is older than")
            && out.contains("left from an earlier build"),
        "{out}"
    );
}
