//! `cargo chimod remove-method kFooBar`: remove a method and the code that
//! serves it, leaving a module that builds.
//!
//! In the module whose `chimaera_mod.yaml` has the key (or, if its line was
//! deleted by hand already, whose lock records it), it removes:
//! * the key's line of `chimaera_mod.yaml`;
//! * in `src/`: the `#[task]` struct implementing the key and the inherent
//!   impl blocks of that struct, the handler and the monitor in the
//!   `#[chimod]` impl block, and the client calls `foo_bar` / `async_foo_bar`
//!   of the `{Module}Client` impl block when there are any;
//! * in `tests/`: the `#[test]` functions that name the handler, the client
//!   calls or the task struct;
//! * in `examples/`: each program that names them (a program is not cut
//!   apart: the one `cargo chimod new` writes calls the example method);
//! * then in each edited file, the names of private `use` items that only the
//!   removed code used ([`crate::edit::prune_uses`]).
//!
//! Other code the removed code alone used (a field, a constant) is left: the
//! build warns about it, and what to do with it is the author's call. The id
//! stays in `chimaera_methods.lock` (ids are permanent, see
//! [`chi_macros_backend::lock`]) unless `--forget-id` is given, for a method
//! that nothing was built against yet. Every file is planned, and must parse
//! after the edit, before the first one is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chi_macros_backend::check::{INHERITED, Method};
use quote::ToTokens;
use syn::{ImplItem, Item};

use crate::check::{Module, check_repo};
use crate::cli::RemoveMethodArgs;
use crate::edit::{self, lines_of, mentions};
use crate::lock::{self, LOCK_FILE};
use crate::repo::Repo;
use crate::source::{collect_rs, find_attr, task_key, type_is};
use crate::templates::camel_case;

/// Runs `cargo chimod remove-method`.
pub fn run(repo: &Repo, args: &RemoveMethodArgs) -> Result<()> {
    let key = args.key.as_str();
    if let Some((_, id)) = INHERITED.iter().find(|(k, _)| *k == key) {
        bail!(
            "`{key}` is inherited (id {id}) and cannot be removed: set it to -1 in \
             chimaera_mod.yaml if the module does not support it"
        );
    }
    let checked = check_repo(&repo.root)?;
    if !checked.problems.is_empty() {
        bail!(
            "the repository has problems; fix them first (`cargo chimod refresh` lists them \
             too):\n  {}",
            checked.problems.join("\n  ")
        );
    }
    let lock_path = repo.root.join(LOCK_FILE);
    let mut lock = lock::load(&lock_path)?;
    let in_yaml = |m: &Module| m.checked.methods.iter().any(|x| x.key == key);
    let mut candidates: Vec<&Module> = checked
        .modules
        .iter()
        .filter(|m| in_yaml(m) || lock.has(&m.lib_name, key))
        .collect();
    if let Some(name) = &args.module {
        candidates.retain(|m| &m.name == name);
    }
    let m = match candidates.as_slice() {
        [one] => *one,
        [] => bail!(
            "no module{} has a method `{key}` (in its chimaera_mod.yaml or in {LOCK_FILE}): check \
             the key, e.g. kGreet",
            args.module
                .as_ref()
                .map(|n| format!(" named `{n}`"))
                .unwrap_or_default()
        ),
        many => bail!(
            "modules {} all have a method `{key}`: choose one with --module <name>",
            many.iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let method = m
        .checked
        .methods
        .iter()
        .find(|x| x.key == key)
        .cloned()
        .unwrap_or_else(|| Method {
            key: key.to_owned(),
            id: lock
                .ids(&m.lib_name)
                .and_then(|i| i.get(key))
                .copied()
                .unwrap_or(-1),
            line: 0,
            comment: None,
        });

    let mut files: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut report: Vec<String> = Vec::new();
    let rel = |p: &Path| {
        p.strip_prefix(&repo.root)
            .unwrap_or(p)
            .display()
            .to_string()
    };
    if method.line > 0 {
        let path = m.checked.path.clone();
        let text = read(&path)?;
        let out = edit::remove_lines(&text, &[(method.line as usize, method.line as usize)]);
        report.push(format!("its line in {}", rel(&path)));
        files.insert(path, out);
    }
    let plan = Names::of(m, &method);
    for (dir, tests) in [(m.dir.join("src"), false), (m.dir.join("tests"), true)] {
        if !dir.is_dir() {
            continue;
        }
        let mut paths = Vec::new();
        collect_rs(&dir, &mut paths)?;
        paths.sort();
        for path in paths {
            let text = read(&path)?;
            let file = edit::parse(&path, &text)?;
            let mut ranges = Vec::new();
            let mut what = Vec::new();
            plan.find(&file.items, tests, &mut ranges, &mut what);
            if ranges.is_empty() {
                continue;
            }
            let before = edit::used_names(&file);
            let cut = edit::remove_lines(&text, &ranges);
            let (out, dropped) = edit::prune_uses(&path, &cut, &before)?;
            if !dropped.is_empty() {
                what.push(format!("the imports {}", dropped.join(", ")));
            }
            edit::parse(&path, &out).context("the edit broke the file (a bug in cargo-chimod)")?;
            report.push(format!("{} in {}", what.join(", "), rel(&path)));
            files.insert(path, out);
        }
    }
    // Example programs that call the method go whole.
    let mut deleted = Vec::new();
    let examples = m.dir.join("examples");
    if examples.is_dir() {
        let mut paths = Vec::new();
        collect_rs(&examples, &mut paths)?;
        paths.sort();
        let mut names = plan.client_fns.to_vec();
        names.push(plan.task.clone());
        for path in paths {
            let text = read(&path)?;
            let file = edit::parse(&path, &text)?;
            if mentions(file.to_token_stream(), &names) {
                report.push(format!(
                    "the program {} (it calls `{}`; write one for your methods)",
                    rel(&path),
                    plan.handler
                ));
                deleted.push(path);
            }
        }
    }
    let mut lock_text = None;
    if args.forget_id
        && let Some(ids) = lock.modules.get_mut(&m.lib_name)
        && ids.remove(key).is_some()
    {
        report.push(format!("its id {} in {LOCK_FILE}", method.id));
        lock_text = Some(lock.render());
    }
    if report.is_empty() {
        println!(
            "remove-method: module {}: nothing of `{key}` is left to remove",
            m.name
        );
        return Ok(());
    }
    for (path, text) in &files {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    for path in &deleted {
        std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    if let Some(text) = lock_text {
        std::fs::write(&lock_path, text)
            .with_context(|| format!("cannot write {}", lock_path.display()))?;
    }
    println!("remove-method: module {}: removed `{key}`:", m.name);
    for line in &report {
        println!("  {line}");
    }
    if !args.forget_id && lock.has(&m.lib_name, key) {
        println!(
            "  its id {} stays recorded in {LOCK_FILE}, so no other method takes it (--forget-id \
             gives it back, for a method nothing was built against)",
            method.id
        );
    }
    println!(
        "what only the removed code used (a field, a constant) is left: `cargo build` warns about it"
    );
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The names the code of one method has.
struct Names {
    key: String,
    task: String,
    handler: String,
    monitor: String,
    client_type: String,
    client_fns: [String; 2],
}

impl Names {
    fn of(m: &Module, method: &Method) -> Names {
        let handler = method.handler();
        Names {
            key: method.key.clone(),
            task: method.task_struct(),
            monitor: method.monitor(),
            client_type: format!("{}Client", camel_case(&m.name)),
            client_fns: [handler.clone(), format!("async_{handler}")],
            handler,
        }
    }

    /// Collects the line ranges (and a description) of what to remove in
    /// `items`: source items, or with `tests` the test functions.
    fn find(
        &self,
        items: &[Item],
        tests: bool,
        ranges: &mut Vec<(usize, usize)>,
        what: &mut Vec<String>,
    ) {
        // The task struct may carry another name (`#[task(name = "kFoo")]`).
        let task_names: Vec<String> = items
            .iter()
            .filter_map(|i| match i {
                Item::Struct(s) => {
                    let attr = find_attr(&s.attrs, "task")?;
                    let name = s.ident.to_string();
                    let key = task_key(attr).unwrap_or_else(|| {
                        format!("k{}", name.strip_suffix("Task").unwrap_or(&name))
                    });
                    (key == self.key).then_some(name)
                }
                _ => None,
            })
            .chain(std::iter::once(self.task.clone()))
            .collect();
        for item in items {
            match item {
                Item::Mod(m) => {
                    if let Some((_, inner)) = &m.content {
                        self.find(inner, tests, ranges, what);
                    }
                }
                Item::Fn(f) if tests => {
                    let mut names = self.client_fns.to_vec();
                    names.extend(task_names.iter().cloned());
                    if find_attr(&f.attrs, "test").is_some()
                        && mentions(f.block.to_token_stream(), &names)
                    {
                        ranges.push(lines_of(f));
                        what.push(format!("test {}", f.sig.ident));
                    }
                }
                _ if tests => {}
                Item::Struct(s)
                    if task_names.contains(&s.ident.to_string())
                        && find_attr(&s.attrs, "task").is_some() =>
                {
                    ranges.push(lines_of(s));
                    what.push(format!("task struct {}", s.ident));
                }
                Item::Impl(imp) if imp.trait_.is_none() => {
                    if task_names.iter().any(|t| type_is(imp, t)) {
                        ranges.push(lines_of(imp));
                        what.push("the task's impl block".to_owned());
                        continue;
                    }
                    let names: Vec<&String> = if find_attr(&imp.attrs, "chimod").is_some() {
                        vec![&self.handler, &self.monitor]
                    } else if type_is(imp, &self.client_type) {
                        self.client_fns.iter().collect()
                    } else {
                        continue;
                    };
                    for i in &imp.items {
                        if let ImplItem::Fn(f) = i
                            && names.contains(&&f.sig.ident.to_string())
                        {
                            ranges.push(lines_of(f));
                            what.push(format!("fn {}", f.sig.ident));
                        }
                    }
                }
                _ => {}
            }
        }
    }
}
