//! `cargo chimod refresh`: check the repository, hold method ids to the lock
//! file, scaffold what new methods need, record their ids.
//!
//! A method is *new* when the lock file does not record it. For each new
//! supported method that needs a handler, refresh adds what is missing:
//! * the task struct (`kFooBar` → `FooBarTask`) at the end of the module's
//!   tasks file, if no `#[task]` struct implements the key;
//! * the handler `foo_bar` at the end of the `#[chimod]` impl block, and with
//!   it the monitor `monitor_foo_bar`, if there is no handler yet;
//!
//! The client's calls are not scaffolded: `#[chimod]` generates them from the
//! task's fields.
//!
//! New methods are scaffolded in the order of the YAML file, so their code
//! follows it. Existing code is never changed: everything is inserted. Nothing
//! is written unless every check passed, nor with `--check`, whose report says
//! what a refresh *would* add and record. Methods recorded in the lock are never
//! scaffolded again, so deleting a scaffolded monitor stays deleted, and a
//! second run finds nothing to do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use minijinja::context;

use crate::check::{Module, check_repo};
use crate::lock::{self, LOCK_FILE, Lock};
use crate::repo::Repo;
use crate::source::ModuleSource;
use crate::templates;

/// An insertion into a file.
#[derive(Debug, Clone)]
struct Insert {
    at: usize,
    text: String,
}

/// What a refresh does (or would do).
#[derive(Debug, Default)]
pub struct Plan {
    /// File → insertions.
    inserts: BTreeMap<PathBuf, Vec<Insert>>,
    /// One entry per scaffolded method, for the user.
    pub report: Vec<Scaffolded>,
    /// The method ids the lock file gains: `lib.key = id`.
    pub recorded: Vec<String>,
    /// The lock file's new text, if it changes.
    pub lock: Option<String>,
    /// The lock file.
    pub lock_path: PathBuf,
}

/// What is added for one new method.
#[derive(Debug, Clone)]
pub struct Scaffolded {
    /// `module {name}: new method {key} (id {id})`.
    pub method: String,
    /// The items added, with their files.
    pub items: Vec<String>,
}

impl Scaffolded {
    /// The report line: what was added, or with `done == false` what would be.
    pub fn line(&self, done: bool) -> String {
        let verb = if done { "added" } else { "would add" };
        format!("{}: {verb} {}", self.method, self.items.join(", "))
    }
}

impl Plan {
    /// Whether the refresh changes nothing.
    pub fn is_empty(&self) -> bool {
        self.inserts.is_empty() && self.lock.is_none()
    }

    /// Writes the insertions and the lock file.
    pub fn apply(&self) -> Result<()> {
        for (path, inserts) in &self.inserts {
            let mut text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mut sorted = inserts.clone();
            // Back to front, so earlier offsets stay valid; equal offsets keep
            // their planned order.
            sorted.sort_by_key(|i| std::cmp::Reverse(i.at));
            let mut groups: Vec<(usize, String)> = Vec::new();
            for i in sorted {
                match groups.last_mut() {
                    Some((at, t)) if *at == i.at => t.push_str(&i.text),
                    _ => groups.push((i.at, i.text)),
                }
            }
            for (at, t) in groups {
                text.insert_str(at, &t);
            }
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        if let Some(lock) = &self.lock {
            std::fs::write(&self.lock_path, lock)
                .with_context(|| format!("cannot write {}", self.lock_path.display()))?;
        }
        Ok(())
    }
}

/// Runs `cargo chimod refresh` on the repository at or above `start`.
pub fn run(repo: &Repo, check_only: bool) -> Result<()> {
    let plan = plan(&repo.root)?;
    let rel = |p: &Path| {
        p.strip_prefix(&repo.root)
            .unwrap_or(p)
            .display()
            .to_string()
    };
    if plan.is_empty() {
        println!(
            "refresh: {} checked; everything is up to date",
            repo.root.display()
        );
        return Ok(());
    }
    if check_only {
        let mut what: Vec<String> = plan.report.iter().map(|s| s.line(false)).collect();
        if plan.lock.is_some() {
            what.push(format!(
                "{LOCK_FILE}: would record {}",
                plan.recorded.join(", ")
            ));
        }
        bail!(
            "refresh --check: the repository is not up to date:\n  {}\nrun `cargo chimod refresh` \
             and commit the result",
            what.join("\n  ")
        );
    }
    plan.apply()?;
    for s in &plan.report {
        println!("refresh: {}", s.line(true));
    }
    if plan.lock.is_some() {
        println!(
            "refresh: recorded {} in {}",
            plan.recorded.join(", "),
            rel(&plan.lock_path)
        );
    }
    Ok(())
}

/// Checks the repository at `root` and plans the refresh; fails with every
/// problem found.
pub fn plan(root: &Path) -> Result<Plan> {
    let checked = check_repo(root)?;
    let lock_path = root.join(LOCK_FILE);
    let lock = lock::load(&lock_path)?;
    // The lock's rules are among the module checks (`check_module_file`
    // holds each module to the lock beside its `chimaera_repo.yaml`).
    let problems = checked.problems;
    if !problems.is_empty() {
        bail!(
            "refresh found {} problem{} (nothing was written):\n  {}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems.join("\n  ")
        );
    }
    let mut plan = Plan {
        lock_path: lock_path.clone(),
        ..Plan::default()
    };
    let mut new_lock = lock.clone();
    for m in &checked.modules {
        scaffold_module(root, m, &lock, &mut plan)?;
        for key in lock::record(&mut new_lock, &m.lib_name, &m.checked.methods) {
            let id = new_lock.modules[&m.lib_name][&key];
            plan.recorded.push(format!("{}.{key} = {id}", m.lib_name));
        }
    }
    let text = new_lock.render();
    let old = std::fs::read_to_string(&lock_path).ok();
    if old.as_deref() != Some(text.as_str()) {
        plan.lock = Some(text);
    }
    Ok(plan)
}

/// Plans the scaffolding of the new methods of `m`.
fn scaffold_module(root: &Path, m: &Module, lock: &Lock, plan: &mut Plan) -> Result<()> {
    let mut new: Vec<_> = m
        .checked
        .methods
        .iter()
        .filter(|x| x.needs_handler() && !lock.has(&m.lib_name, &x.key))
        .collect();
    // In the order of the YAML file.
    new.sort_by_key(|x| x.line);
    if new.is_empty() || !m.dir.join("src").is_dir() {
        return Ok(());
    }
    let src = ModuleSource::scan(&m.dir, None)?;
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let chimod = match src.chimod.as_slice() {
        [one] => Some(one),
        [] => None,
        [a, b, ..] => bail!(
            "module {}: two #[chimod] impl blocks ({} and {}); a module has one",
            m.name,
            rel(&a.file),
            rel(&b.file)
        ),
    };
    for method in new {
        let mut did = Vec::new();
        let (task_name, new_task) = match src.task_for(&method.key) {
            Some(t) => (t.name.clone(), false),
            None => {
                let Some(file) = src.tasks_file() else {
                    bail!(
                        "module {}: no file to add `{}` to (no #[task] struct, no src/tasks.rs, no \
                         #[chimod] impl)",
                        m.name,
                        method.task_struct()
                    );
                };
                let ctx = method_context(m, method, &method.task_struct(), "", "", true);
                let body = templates::render(templates::SCAFFOLD_TASK, &ctx)?;
                let sep = if file.text.ends_with('\n') {
                    "\n"
                } else {
                    "\n\n"
                };
                push(plan, &file.path, file.text.len(), format!("{sep}{body}"));
                did.push(format!("{} in {}", method.task_struct(), rel(&file.path)));
                (method.task_struct(), true)
            }
        };
        let handler = method.handler();
        let Some(block) = chimod else {
            bail!(
                "module {}: no #[chimod] impl block in {}/src, so the handler `{handler}` of `{}` \
                 has nowhere to go; add the container's impl block first",
                m.name,
                rel(&m.dir),
                method.key
            );
        };
        if !block.fns.contains(&handler) {
            let task_path = type_path(&src, &task_name, &block.file);
            let file = rel(&block.file);
            let ctx = method_context(m, method, &task_name, &task_path, &file, new_task);
            let mut text = String::from("\n");
            text.push_str(&templates::render(templates::SCAFFOLD_HANDLER, &ctx)?);
            let mut what = format!("handler {handler}");
            if !block.fns.contains(&method.monitor()) {
                text.push('\n');
                text.push_str(&templates::render(templates::SCAFFOLD_MONITOR, &ctx)?);
                what.push_str(&format!(" and monitor {}", method.monitor()));
            }
            if block.brace_inline {
                text.push('\n');
            }
            push(plan, &block.file, block.insert_at, text);
            did.push(format!("{what} in {file}"));
        }
        if !did.is_empty() {
            plan.report.push(Scaffolded {
                method: format!(
                    "module {}: new method {} (id {})",
                    m.name, method.key, method.id
                ),
                items: did,
            });
        }
    }
    Ok(())
}

fn push(plan: &mut Plan, file: &Path, at: usize, text: String) {
    plan.inserts
        .entry(file.to_owned())
        .or_default()
        .push(Insert { at, text });
}

/// How code in `from` names the task type `name`: bare when it is defined in
/// the same file, imported there (`use crate::tasks::*;` or `use
/// crate::tasks::Name;`) or not found; else by its module path.
fn type_path(src: &ModuleSource, name: &str, from: &Path) -> String {
    let defined_in = src
        .tasks
        .iter()
        .find(|t| t.name == name)
        .map(|t| t.file.clone())
        .or_else(|| src.tasks_file().map(|f| f.path.clone()));
    let Some(def) = defined_in.and_then(|p| src.file(&p)) else {
        return name.to_owned();
    };
    if def.path == from {
        return name.to_owned();
    }
    let mp = &def.module_path;
    let imported = src.file(from).is_some_and(|f| {
        f.text.contains(&format!("use {mp}::*;")) || f.text.contains(&format!("use {mp}::{name};"))
    });
    if imported {
        name.to_owned()
    } else if mp == "crate" {
        format!("crate::{name}")
    } else {
        format!("{mp}::{name}")
    }
}

fn method_context(
    m: &Module,
    method: &chi_macros_backend::check::Method,
    task: &str,
    task_path: &str,
    file: &str,
    new_task: bool,
) -> minijinja::Value {
    context! {
        new_task => new_task,
        file_lit => format!("{file:?}"),
        module => m.name.clone(),
        lib_name => m.lib_name.clone(),
        key => method.key.clone(),
        id => method.id,
        handler => method.handler(),
        monitor => method.monitor(),
        task => task.to_owned(),
        task_path => task_path.to_owned(),
        file => file.to_owned(),
    }
}
