//! `cargo chimod refresh` and `new` refusing what is wrong, and the help text;
//! no builds (see `new_build_call.rs` for those).

mod support;

use support::*;

/// A fresh repository `r` with module `hello` in a scratch directory.
fn repo(test: &str) -> (Scratch, std::path::PathBuf) {
    let s = Scratch::new(test);
    chimod(s.path(), &["new", "r", "--module", "hello"]).ok();
    let r = s.path().join("r");
    (s, r)
}

#[test]
fn bad_names_are_refused_before_anything_is_written() {
    let s = Scratch::new("names");
    for (args, want) in [
        (
            vec!["new", "x1", "--module", "My-Mod"],
            "'My-Mod' is not a valid module name",
        ),
        (
            vec!["new", "x2", "--module", "9lives"],
            "must start with a lower-case letter",
        ),
        (vec!["new", "x3", "--module", "type"], "Rust keyword"),
        (
            vec!["new", "x4", "--namespace", "a.b"],
            "'a.b' is not a valid namespace",
        ),
        (
            vec!["new", "bad-dir"],
            "pass --module <name> (e.g. --module bad_dir)",
        ),
        (
            vec!["new", "x5", "--module", "admin"],
            "the runtime's built-in module",
        ),
        (
            vec!["new", "--module", "m"],
            "is not inside a module repository",
        ),
    ] {
        let err = chimod(s.path(), &args).fails();
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(snapshot(s.path()).is_empty(), "something was written");

    // A module that clashes with an existing one, inside a repository.
    chimod(s.path(), &["new", "r", "--module", "hello"]).ok();
    let r = s.path().join("r");
    let before = snapshot(&r);
    for (args, want) in [
        (
            vec!["new", "--module", "hello"],
            "module `hello` already exists",
        ),
        (vec!["new", "--module", "Hello"], "try `hello`"),
        (
            vec!["new", "--module", "other", "--namespace", "acme"],
            "drop --namespace acme",
        ),
        (vec!["new"], "name the module with --module <name>"),
    ] {
        let err = chimod(&r, &args).fails();
        assert!(err.contains(want), "{args:?}: {err}");
    }
    std::fs::create_dir(r.join("taken")).unwrap();
    let err = chimod(&r, &["new", "--module", "taken"]).fails();
    assert!(err.contains("taken already exists"), "{err}");
    std::fs::remove_dir(r.join("taken")).unwrap();
    // A non-empty directory is not a new repository.
    let err = chimod(s.path(), &["new", "r/hello"]).fails();
    assert!(err.contains("not an empty directory"), "{err}");
    assert_eq!(snapshot(&r), before, "a refused `new` wrote files");
}

#[test]
fn refresh_reports_every_yaml_problem_and_writes_nothing() {
    let (_s, r) = repo("yaml");
    let yaml = r.join("hello/chimaera_mod.yaml");
    let original = read(&yaml);
    write(
        &yaml,
        &(original.replace("namespace: chimaera", "namespace: other")
            + "kDestroy2: 5\nkSame: 10\nkbad: 12\nkNotANumber: ten\nkRecover2: -1\n"),
    );
    let before = snapshot(&r);
    let err = chimod(&r, &["refresh"]).fails();
    for want in [
        "`namespace: other` disagrees with `namespace: chimaera`",
        "`kDestroy2: 5`: custom methods have ids from 10",
        "duplicate method id 10: `kGreet`",
        "unknown key `kbad` (did you mean `kBad`?)",
        "`kNotANumber` is not an integer method id",
        "nothing was written",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert_eq!(snapshot(&r), before);

    // Inherited ids are fixed.
    write(&yaml, &original.replace("kDestroy: 1", "kDestroy: 3"));
    let err = chimod(&r, &["refresh"]).fails();
    assert!(
        err.contains("`kDestroy` is inherited and its id is 1"),
        "{err}"
    );

    // The module list and the module directories agree.
    write(&yaml, &original);
    let repo_yaml = r.join("chimaera_repo.yaml");
    let list = read(&repo_yaml);
    write(
        &repo_yaml,
        &list.replace("  - hello\n", "  - hello\n  - ghost\n"),
    );
    let err = chimod(&r, &["refresh"]).fails();
    assert!(err.contains("lists `ghost`"), "{err}");
    write(&repo_yaml, &list.replace("  - hello\n", ""));
    let err = chimod(&r, &["refresh"]).fails();
    assert!(err.contains("is not in the `modules:` list"), "{err}");
    write(&repo_yaml, &list);
    chimod(&r, &["refresh"]).ok();
}

#[test]
fn ids_are_permanent_even_after_a_method_is_removed() {
    let (_s, r) = repo("ids");
    let yaml = r.join("hello/chimaera_mod.yaml");
    let original = read(&yaml);
    append(&yaml, "kOld: 11\n");
    chimod(&r, &["refresh"]).ok();
    // Unsupported (-1) is fine, and so is removing it...
    write(&yaml, &(original.clone() + "kOld: -1\n"));
    chimod(&r, &["refresh"]).ok();
    write(&yaml, &original);
    let out = chimod(&r, &["refresh"]).ok();
    assert!(out.contains("up to date"), "{out}");
    // ...but its id is not given to another method.
    append(&yaml, "kNew: 11\n");
    let err = chimod(&r, &["refresh"]).fails();
    assert!(
        err.contains("`kNew: 11` of module chimaera_hello takes the id of `kOld`")
            && err.contains("unused id (from 12)"),
        "{err}"
    );
    // Nor does kOld come back with another id.
    write(&yaml, &(original + "kOld: 13\n"));
    let err = chimod(&r, &["refresh"]).fails();
    assert!(
        err.contains("records id 11, the YAML file now says 13"),
        "{err}"
    );
}

#[test]
fn refresh_leaves_what_the_author_wrote() {
    let (_s, r) = repo("author");
    // The author wrote the task and the handler before running refresh, and
    // keeps their own names for the monitor's absence.
    append(
        &r.join("hello/chimaera_mod.yaml"),
        "kMine: 11\nkLater: 12\n",
    );
    append(
        &r.join("hello/src/tasks.rs"),
        "\n#[chi_sdk::task(method = 11)]\n#[derive(Debug)]\npub struct MineTask {\n    pub v: u32,\n}\n",
    );
    let runtime = r.join("hello/src/runtime.rs");
    let text = read(&runtime);
    // At the end of the #[chimod] impl block, which the Drop impl follows.
    let drop_impl = text.find("impl Drop").unwrap();
    let at = text[..drop_impl].rfind("}\n").unwrap();
    let mine = "\n    fn mine(&self, _t: &mut MineTask, _c: &mut RunCtx) -> Result<(), String> {\n        Ok(())\n    }\n";
    write(&runtime, &format!("{}{mine}{}", &text[..at], &text[at..]));
    let out = chimod(&r, &["refresh"]).ok();
    assert!(
        !out.contains("new method kMine"),
        "kMine was complete:\n{out}"
    );
    assert!(out.contains("new method kLater (id 12)"), "{out}");
    let tasks = read(&r.join("hello/src/tasks.rs"));
    assert_eq!(tasks.matches("pub struct MineTask").count(), 1);
    assert!(tasks.contains("pub struct LaterTask"));
    let rt = read(&runtime);
    assert_eq!(rt.matches("fn mine(").count(), 1);
    assert!(rt.contains("fn later(") && rt.contains("fn monitor_later("));
    assert!(!rt.contains("fn monitor_mine("));
    // Deleting a scaffolded monitor sticks: kLater is recorded now.
    let start = rt.find("    /// Monitor of `kLater`").unwrap();
    let end = start + rt[start..].find("\n    }\n").unwrap() + "\n    }\n".len();
    write(&runtime, &format!("{}{}", &rt[..start], &rt[end..]));
    let out = chimod(&r, &["refresh"]).ok();
    assert!(out.contains("up to date"), "{out}");
    assert!(!read(&runtime).contains("fn monitor_later("));
}

#[test]
fn the_sdk_dependency_follows_the_flags() {
    let s = Scratch::new("sdk");
    chimod(s.path(), &["new", "v", "--sdk-version", "9.8.7"]).ok();
    let m = read(&s.path().join("v/Cargo.toml"));
    assert!(m.contains("chi-sdk = \"9.8.7\""), "{m}");
    assert!(!s.path().join("v/.cargo").exists(), "no checkout, no link");
    chimod(
        s.path(),
        &["new", "p", "--sdk-path", workspace().to_str().unwrap()],
    )
    .ok();
    let m = read(&s.path().join("p/Cargo.toml"));
    assert!(
        m.contains(&format!("chi-sdk = \"{}\"", env!("CARGO_PKG_VERSION"))),
        "{m}"
    );
    let sdk = workspace().join("chi-sdk").canonicalize().unwrap();
    let config = read(&s.path().join("p/.cargo/config.toml"));
    assert!(
        config.contains(&format!("chi-sdk = {{ path = \"{}\" }}", sdk.display())),
        "{config}"
    );
    let err = chimod(s.path(), &["new", "q", "--sdk-path", "/nonexistent"]).fails();
    assert!(err.contains("no such directory"), "{err}");
}

/// Only the uncommitted .cargo/config.toml names a directory of this machine.
#[test]
fn a_new_repository_names_no_directory_of_this_machine() {
    let (s, r) = repo("paths");
    let here = [
        workspace().canonicalize().unwrap(),
        s.path().canonicalize().unwrap(),
    ];
    for (path, text) in snapshot(&r) {
        for dir in &here {
            assert!(
                !text.contains(dir.to_str().unwrap()),
                "{} names {}:\n{text}",
                path.display(),
                dir.display()
            );
        }
    }
    assert!(read(&r.join(".gitignore")).contains("/.cargo/config.toml"));
    assert!(read(&r.join(".cargo/config.toml")).contains(workspace().to_str().unwrap()));
}

#[test]
fn link_writes_the_local_config_and_refuses_a_path_dependency() {
    let (s, r) = repo("link");
    std::fs::remove_dir_all(r.join(".cargo")).unwrap();
    let bin = s.path().join("no-such-runtime");
    let out = chimod(
        &r,
        &[
            "link",
            workspace().to_str().unwrap(),
            "--runtime-bin",
            bin.to_str().unwrap(),
        ],
    )
    .ok();
    assert!(out.contains("does not exist yet"), "{out}");
    let config = read(&r.join(".cargo/config.toml"));
    assert!(
        config.contains("[patch.crates-io]")
            && config.contains(&format!("CHI_RUNTIME_BIN = \"{}\"", bin.display())),
        "{config}"
    );
    let err = chimod(&r, &["link", s.path().to_str().unwrap()]).fails();
    assert!(err.contains("neither it nor its chi-sdk/"), "{err}");
    let manifest = r.join("Cargo.toml");
    let text = read(&manifest);
    write(&manifest, &text.replace("chi-sdk = \"", "chi-sdk = \"9"));
    let err = chimod(&r, &["link", workspace().to_str().unwrap()]).fails();
    assert!(err.contains("link a checkout of that version"), "{err}");
    write(
        &manifest,
        &text.replace("chi-sdk = \"", "chi-sdk = { path = \"/x\" } #"),
    );
    let err = chimod(&r, &["link", workspace().to_str().unwrap()]).fails();
    assert!(err.contains("depends on chi-sdk by path"), "{err}");
}

#[test]
fn refresh_follows_the_yaml_order_and_check_writes_nothing() {
    let (_s, r) = repo("order");
    append(
        &r.join("hello/chimaera_mod.yaml"),
        "kZeta: 11\nkAlpha: 12\nkMiddle: 13\n",
    );
    let before = snapshot(&r);
    let err = chimod(&r, &["refresh", "--check"]).fails();
    assert!(
        err.contains("new method kZeta (id 11): would add ZetaTask in hello/src/tasks.rs")
            && err.contains("would record chimaera_hello.kAlpha = 12")
            && !err.contains(": added"),
        "{err}"
    );
    assert_eq!(snapshot(&r), before, "--check wrote files");
    let out = chimod(&r, &["refresh"]).ok();
    let pos = |t: &str, what: &str| t.find(what).unwrap_or_else(|| panic!("no {what}:\n{t}"));
    assert!(pos(&out, "kZeta") < pos(&out, "kAlpha") && pos(&out, "kAlpha") < pos(&out, "kMiddle"));
    assert!(
        out.contains("new method kZeta (id 11): added ZetaTask"),
        "{out}"
    );
    let tasks = read(&r.join("hello/src/tasks.rs"));
    assert!(pos(&tasks, "ZetaTask") < pos(&tasks, "AlphaTask"));
    assert!(pos(&tasks, "AlphaTask") < pos(&tasks, "MiddleTask"));
    let rt = read(&r.join("hello/src/runtime.rs"));
    assert!(
        pos(&rt, "fn zeta(") < pos(&rt, "fn alpha(")
            && pos(&rt, "fn alpha(") < pos(&rt, "fn middle(")
    );
    chimod(&r, &["refresh", "--check"]).ok();
}

#[test]
fn remove_method_keeps_the_id_unless_told_and_refuses_what_it_cannot_do() {
    let s = Scratch::new("remove");
    chimod(s.path(), &["new", "r", "--module", "hello"]).ok();
    let r = s.path().join("r");
    chimod(&r, &["new", "--module", "other"]).ok();
    for (args, want) in [
        (vec!["remove-method", "kCreate"], "is inherited"),
        (
            vec!["remove-method", "kNope"],
            "no module has a method `kNope`",
        ),
        (vec!["remove-method", "kGreet"], "choose one with --module"),
    ] {
        let err = chimod(&r, &args).fails();
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let out = chimod(&r, &["remove-method", "kGreet", "--module", "hello"]).ok();
    assert!(out.contains("stays recorded"), "{out}");
    assert!(!read(&r.join("hello/src/runtime.rs")).contains("fn greet("));
    assert!(read(&r.join("other/src/runtime.rs")).contains("fn greet("));
    // The id stays taken.
    let hello_yaml = r.join("hello/chimaera_mod.yaml");
    let kept = read(&hello_yaml);
    append(&hello_yaml, "kMine: 10\n");
    let err = chimod(&r, &["refresh"]).fails();
    assert!(err.contains("takes the id of `kGreet`"), "{err}");
    write(&hello_yaml, &kept);
    // A YAML line deleted by hand: the code and, if asked, the id still go.
    let yaml = r.join("other/chimaera_mod.yaml");
    let text = read(&yaml);
    let line = text.lines().find(|l| l.starts_with("kGreet:")).unwrap();
    write(&yaml, &text.replace(&format!("{line}\n"), ""));
    let out = chimod(
        &r,
        &[
            "remove-method",
            "kGreet",
            "--module",
            "other",
            "--forget-id",
        ],
    )
    .ok();
    assert!(
        out.contains("task struct GreetTask") && out.contains("its id 10"),
        "{out}"
    );
    assert!(
        !read(&r.join("chimaera_methods.lock"))
            .contains("[chimaera_other]\nkCreate = 0\nkDestroy = 1\nkGreet")
    );
    let out = chimod(&r, &["remove-method", "kGreet", "--module", "other"]).fails();
    assert!(
        out.contains("no module named `other` has a method `kGreet`"),
        "{out}"
    );
}

#[test]
fn every_sub_command_has_help() {
    let s = Scratch::new("help");
    let top = chimod(s.path(), &["--help"]).ok();
    for want in [
        "new",
        "refresh",
        "remove-method",
        "link",
        "install",
        "Getting started",
    ] {
        assert!(top.contains(want), "{top}");
    }
    for (cmd, wants) in [
        (
            "new",
            &[
                "--namespace",
                "--module",
                "--sdk-path",
                "--sdk-version",
                "by version",
                "cargo chimod link",
            ][..],
        ),
        (
            "refresh",
            &[
                "chimaera_methods.lock",
                "--check",
                "kCreate 0",
                "order of the YAML",
            ][..],
        ),
        (
            "remove-method",
            &["--forget-id", "--module", "Replace the example method"][..],
        ),
        ("link", &["--runtime-bin", "[patch.crates-io]"][..]),
        ("install", &["--dest", "CHI_MODULE_PATH", "module_path"][..]),
    ] {
        let help = chimod(s.path(), &[cmd, "--help"]).ok();
        for want in wants {
            assert!(
                help.contains(want),
                "`{cmd} --help` lacks {want:?}:\n{help}"
            );
        }
    }
    let v = chimod(s.path(), &["--version"]).ok();
    assert!(v.contains(env!("CARGO_PKG_VERSION")), "{v}");
}

#[test]
fn install_needs_a_destination_and_a_module_that_exists() {
    let (_s, r) = repo("install");
    let err = chimod(&r, &["install"]).fails();
    assert!(
        err.contains("pass --dest <dir>") && err.contains("CHI_MODULE_PATH"),
        "{err}"
    );
    let err = chimod(&r, &["install", "--dest", "/tmp", "--module", "nope"]).fails();
    assert!(err.contains("no module `nope`"), "{err}");
}
