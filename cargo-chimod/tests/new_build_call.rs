//! From `cargo chimod new` to a method answered by a running runtime, in
//! repositories scaffolded outside this workspace: each repository is built
//! with plain cargo and its generated tests start `chi-runtime`, create a pool
//! and call the module (see the generated `tests/support/mod.rs`).
//!
//! Builds are the slow part, so each test makes one repository and covers
//! several steps with it.

mod support;

use support::*;

/// The default namespace, a second module added with `new --module`, a method
/// added to the YAML and scaffolded by `refresh`, its handler filled in and
/// called; then `install` and the installed copy tested; then a renumbering
/// refused.
#[test]
fn a_repository_grows_a_module_and_a_method_and_answers() {
    let scratch = Scratch::new("grow");
    let repo = scratch.path().join("my_mods");
    let out = chimod(scratch.path(), &["new", "my_mods", "--module", "hello"]).ok();
    assert!(out.contains("libchimaera_hello_runtime.so"), "{out}");
    // From a checkout, chi-sdk comes by version, patched to the checkout in
    // the local .cargo/config.toml.
    let manifest = read(&repo.join("Cargo.toml"));
    assert!(
        manifest.contains(&format!("chi-sdk = \"{}\"", env!("CARGO_PKG_VERSION"))),
        "{manifest}"
    );
    let sdk = workspace().join("chi-sdk").canonicalize().unwrap();
    let config = read(&repo.join(".cargo/config.toml"));
    assert!(
        config.contains(&format!("chi-sdk = {{ path = \"{}\" }}", sdk.display())),
        "{config}"
    );

    // A second module, added from inside the repository.
    let out = chimod(&repo.join("hello/src"), &["new", "--module", "second"]).ok();
    assert!(out.contains("added module second"), "{out}");
    let repo_yaml = read(&repo.join("chimaera_repo.yaml"));
    assert!(repo_yaml.contains("  - hello\n  - second\n"), "{repo_yaml}");
    assert!(read(&repo.join("Cargo.toml")).contains("members = [\"hello\", \"second\"]"));
    assert!(read(&repo.join("chimaera_methods.lock")).contains("[chimaera_second]\n"));

    // A new method: refresh scaffolds it, and a second refresh changes nothing.
    append(
        &repo.join("hello/chimaera_mod.yaml"),
        "kDouble: 11      # doubles\n",
    );
    let before = snapshot(&repo);
    let out = chimod(&repo, &["refresh"]).ok();
    assert!(
        out.contains("new method kDouble (id 11)")
            && out.contains("DoubleTask in hello/src/tasks.rs")
            && out.contains("handler double and monitor monitor_double in hello/src/runtime.rs")
            // The client's calls are generated, not scaffolded.
            && !out.contains("client calls"),
        "{out}"
    );
    let after = snapshot(&repo);
    // Only additions: every line of every file before is still there, in order.
    for ((path, old), (_, new)) in before.iter().zip(&after) {
        let mut rest = new.lines();
        for line in old.lines() {
            assert!(
                rest.any(|l| l == line),
                "refresh changed or removed `{line}` in {}",
                path.display()
            );
        }
    }
    assert!(read(&repo.join("chimaera_methods.lock")).contains("kDouble = 11\n"));
    let out = chimod(&repo, &["refresh"]).ok();
    assert!(out.contains("everything is up to date"), "{out}");
    assert_eq!(snapshot(&repo), after, "a second refresh changed files");
    chimod(&repo, &["refresh", "--check"]).ok();

    // The scaffold builds without warnings in the module's own code.
    pin_dependencies(&repo);
    let build = cargo(&repo, &["build"]);
    build.ok();
    let warnings: Vec<&str> = build
        .out
        .stderr
        .split(|b| *b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok())
        .filter(|l| l.contains("warning") && (l.contains("hello") || l.contains("second")))
        .collect();
    assert!(warnings.is_empty(), "warnings:\n{}", build.stderr());

    // A method over bytes, as the README shows it: refresh scaffolds it, the
    // author retypes its two fields and writes its body.
    append(
        &repo.join("hello/chimaera_mod.yaml"),
        "kReverse: 12     # reverses bytes\n",
    );
    let out = chimod(&repo, &["refresh"]).ok();
    assert!(out.contains("new method kReverse (id 12)"), "{out}");
    let tasks_rs = repo.join("hello/src/tasks.rs");
    let text = read(&tasks_rs);
    let at = text
        .find("pub struct ReverseTask")
        .expect("the scaffolded ReverseTask");
    let retyped = text[at..]
        .replacen(
            "pub input: u64",
            "pub input: chi_sdk::bytes::ClientBytes",
            1,
        )
        .replacen(
            "pub output: u64",
            "pub output: chi_sdk::bytes::ClientBuf",
            1,
        );
    write(&tasks_rs, &format!("{}{retyped}", &text[..at]));
    fill_handler(
        &repo.join("hello/src/runtime.rs"),
        "kReverse",
        "        let input = task.input.get()?;\n        \
         let reversed: Vec<u8> = input.iter().rev().copied().collect();\n        \
         task.output.get_mut()?.write(&reversed)\n",
    );

    // Fill in the handler, and test the new method through the generated client.
    fill_handler(
        &repo.join("hello/src/runtime.rs"),
        "kDouble",
        "        task.output = task.input * 2;\n        Ok(())\n",
    );
    write(
        &repo.join("hello/tests/double.rs"),
        "mod support;\n\n\
         use chimaera_hello_runtime::{CreateParams, HelloClient};\n\n\
         #[test]\n\
         fn double_is_answered() {\n    \
             let runtime = support::Runtime::start();\n    \
             let client = runtime.client();\n    \
             let pool = HelloClient::create(&client, \"doubles\", &CreateParams::default()).unwrap();\n    \
             assert_eq!(pool.double(&client, 21).unwrap(), 42);\n    \
             let pending = pool.async_double(&client, 50).unwrap();\n    \
             assert_eq!(pending.wait_with(|t| t.output).unwrap(), 100);\n    \
             assert_eq!(pool.reverse(&client, b\"abc\").unwrap(), b\"cba\");\n    \
             drop(client);\n    \
             runtime.stop();\n\
         }\n",
    );
    let out = cargo(&repo, &["test"]).ok();
    for test in [
        "a_running_runtime_answers_greet",
        "two_runtimes_answer_side_by_side",
        "the_call_program_greets",
        "double_is_answered",
    ] {
        assert!(
            out.contains(&format!("test {test} ... ok")),
            "{test} did not pass:\n{out}"
        );
    }
    // Both modules' greet tests ran.
    assert_eq!(
        out.matches("test a_running_runtime_answers_greet ... ok")
            .count(),
        2,
        "{out}"
    );

    // Install into a module directory, and test the installed copies.
    let dest = scratch.path().join("installed");
    let out = chimod(&repo, &["install", "--dest", dest.to_str().unwrap()]).ok();
    assert!(out.contains("module_path"), "{out}");
    for lib in [
        "libchimaera_hello_runtime.so",
        "libchimaera_second_runtime.so",
    ] {
        assert!(dest.join(lib).is_file(), "{lib} not installed:\n{out}");
    }
    let out = cargo_env(
        &repo,
        &["test", "-p", "hello", "--test", "double"],
        &[("CHI_TEST_MODULE_DIR", &dest)],
    )
    .ok();
    assert!(out.contains("test double_is_answered ... ok"), "{out}");

    // A renumbering is refused with the method and both ids, and nothing is written.
    let yaml = repo.join("hello/chimaera_mod.yaml");
    write(&yaml, &read(&yaml).replace("kDouble: 11", "kDouble: 12"));
    let before = snapshot(&repo);
    let err = chimod(&repo, &["refresh"]).fails();
    assert!(
        err.contains("`kDouble` of module chimaera_hello was renumbered")
            && err.contains("records id 11")
            && err.contains("now says 12"),
        "{err}"
    );
    assert_eq!(snapshot(&repo), before);
    assert!(
        !repo.join("target").exists(),
        "everything was to be built in the shared target directory"
    );
}

/// A custom namespace: the library, the lock and the generated test follow it.
#[test]
fn a_custom_namespace_repository_answers() {
    let scratch = Scratch::new("acme");
    let repo = scratch.path().join("acme_mods");
    let out = chimod(
        scratch.path(),
        &[
            "new",
            "acme_mods",
            "--namespace",
            "acme",
            "--module",
            "greeter",
        ],
    )
    .ok();
    assert!(out.contains("libacme_greeter_runtime.so"), "{out}");
    assert!(read(&repo.join("chimaera_repo.yaml")).contains("namespace: acme\n"));
    assert!(read(&repo.join("greeter/chimaera_mod.yaml")).contains("namespace: acme\n"));
    assert!(read(&repo.join("greeter/Cargo.toml")).contains("name = \"acme_greeter_runtime\""));
    assert!(read(&repo.join("chimaera_methods.lock")).contains("[acme_greeter]\nkCreate = 0\n"));
    pin_dependencies(&repo);
    let out = cargo(&repo, &["test"]).ok();
    assert!(
        out.contains("test a_running_runtime_answers_greet ... ok"),
        "{out}"
    );
}

/// Replaces the body of the handler `refresh` scaffolded for `key` in
/// `runtime_rs` with `body`.
fn fill_handler(runtime_rs: &std::path::Path, key: &str, body: &str) {
    let text = read(runtime_rs);
    let start = text
        .find(&format!(
            "        Err(format!(\n            \"{key} is not implemented yet"
        ))
        .unwrap_or_else(|| panic!("the scaffolded body of {key}"));
    let end = start
        + text[start..].find("        .into())\n").expect("its end")
        + "        .into())\n".len();
    write(
        runtime_rs,
        &format!("{}{body}{}", &text[..start], &text[end..]),
    );
}
