//! What a module's Rust sources already hold, found with `syn`: its task
//! structs, its `#[chimod]` impl block and its client impl block, with the
//! places where `refresh` may insert code (the end of a file, the end of an
//! impl block). Nothing here rewrites code: insertions are pure additions.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use syn::{Attribute, ImplItem, Item, ItemImpl, LitStr};

/// A `#[task]` struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskItem {
    /// The struct's name.
    pub name: String,
    /// The YAML key it implements (`name = "kFoo"`, else `k` + the name less
    /// a `Task` suffix).
    pub key: String,
    /// The file.
    pub file: PathBuf,
}

/// An impl block refresh may add functions to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImplBlock {
    /// The file.
    pub file: PathBuf,
    /// Names of its functions.
    pub fns: BTreeSet<String>,
    /// Byte offset in the file where new functions go: the start of the line
    /// of the closing brace (or the brace itself when code precedes it there).
    pub insert_at: usize,
    /// Whether `insert_at` is at the brace itself (code precedes it on its line).
    pub brace_inline: bool,
}

/// A parsed source file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Its path.
    pub path: PathBuf,
    /// Its Rust module path (`crate`, `crate::tasks`…), from its place in `src/`.
    pub module_path: String,
    /// Its text.
    pub text: String,
}

/// What the sources of one module crate hold.
#[derive(Debug, Clone, Default)]
pub struct ModuleSource {
    /// Its files (`src/**/*.rs`), sorted.
    pub files: Vec<SourceFile>,
    /// The `#[task]` structs.
    pub tasks: Vec<TaskItem>,
    /// The `#[chimod]` impl blocks (one is expected).
    pub chimod: Vec<ImplBlock>,
    /// Impl blocks of the type named `client_type`, if asked for.
    pub client: Vec<ImplBlock>,
}

impl ModuleSource {
    /// Scans `crate_dir/src`. `client_type` names the client struct whose impl
    /// block receives client calls.
    pub fn scan(crate_dir: &Path, client_type: Option<&str>) -> Result<ModuleSource> {
        let src = crate_dir.join("src");
        let mut paths = Vec::new();
        collect_rs(&src, &mut paths)?;
        paths.sort();
        let mut out = ModuleSource::default();
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let file = syn::parse_file(&text).map_err(|e| {
                let at = e.span().start();
                anyhow::anyhow!(
                    "cannot parse {}:{}:{}: {e}; fix it first (refresh only adds code to files \
                     that parse)",
                    path.display(),
                    at.line,
                    at.column + 1
                )
            })?;
            scan_items(&file.items, &path, &text, client_type, &mut out)?;
            out.files.push(SourceFile {
                module_path: module_path(&src, &path),
                path,
                text,
            });
        }
        Ok(out)
    }

    /// The task struct implementing `key`, if any.
    pub fn task_for(&self, key: &str) -> Option<&TaskItem> {
        self.tasks.iter().find(|t| t.key == key)
    }

    /// The file new task structs are appended to: the one holding most task
    /// structs, else `src/tasks.rs`, else the file of the `#[chimod]` impl.
    pub fn tasks_file(&self) -> Option<&SourceFile> {
        let mut best: Option<(&SourceFile, usize)> = None;
        for f in &self.files {
            let n = self.tasks.iter().filter(|t| t.file == f.path).count();
            if n > 0 && best.is_none_or(|(_, b)| n > b) {
                best = Some((f, n));
            }
        }
        best.map(|(f, _)| f)
            .or_else(|| self.files.iter().find(|f| f.path.ends_with("src/tasks.rs")))
            .or_else(|| {
                let c = self.chimod.first()?;
                self.files.iter().find(|f| f.path == c.file)
            })
    }

    /// The file `path`.
    pub fn file(&self, path: &Path) -> Option<&SourceFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

pub(crate) fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for e in entries {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            collect_rs(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// `src/lib.rs` → `crate`, `src/a/b.rs` and `src/a/b/mod.rs` → `crate::a::b`.
fn module_path(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if !matches!(stem, "lib" | "main" | "mod") {
            parts.push(stem.to_owned());
        }
    }
    std::iter::once("crate".to_owned())
        .chain(parts)
        .collect::<Vec<_>>()
        .join("::")
}

/// Whether `attrs` hold `#[name]` or `#[path::name(…)]`.
pub(crate) fn find_attr<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    attrs
        .iter()
        .find(|a| a.path().segments.last().is_some_and(|s| s.ident == name))
}

fn scan_items(
    items: &[Item],
    path: &Path,
    text: &str,
    client_type: Option<&str>,
    out: &mut ModuleSource,
) -> Result<()> {
    for item in items {
        match item {
            Item::Struct(s) => {
                if let Some(attr) = find_attr(&s.attrs, "task") {
                    let name = s.ident.to_string();
                    let key = task_key(attr).unwrap_or_else(|| {
                        format!("k{}", name.strip_suffix("Task").unwrap_or(&name))
                    });
                    out.tasks.push(TaskItem {
                        name,
                        key,
                        file: path.to_owned(),
                    });
                }
            }
            Item::Impl(imp) => {
                let is_chimod = find_attr(&imp.attrs, "chimod").is_some();
                let is_client =
                    imp.trait_.is_none() && client_type.is_some_and(|c| type_is(imp, c));
                if is_chimod || is_client {
                    let block = impl_block(imp, path, text)?;
                    if is_chimod {
                        out.chimod.push(block);
                    } else {
                        out.client.push(block);
                    }
                }
            }
            Item::Mod(m) => {
                if let Some((_, inner)) = &m.content {
                    scan_items(inner, path, text, client_type, out)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether the impl is for the type named `name`.
pub(crate) fn type_is(imp: &ItemImpl, name: &str) -> bool {
    matches!(&*imp.self_ty, syn::Type::Path(tp) if tp.path.segments.last().is_some_and(|s| s.ident == name))
}

/// `name = "kFoo"` of a `#[task(…)]` attribute.
pub(crate) fn task_key(attr: &Attribute) -> Option<String> {
    let mut key = None;
    let _ = attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("name") {
            key = Some(meta.value()?.parse::<LitStr>()?.value());
        } else if meta.input.peek(syn::Token![=]) {
            let _: syn::Expr = meta.value()?.parse()?;
        }
        Ok(())
    });
    key
}

fn impl_block(imp: &ItemImpl, path: &Path, text: &str) -> Result<ImplBlock> {
    let fns = imp
        .items
        .iter()
        .filter_map(|i| match i {
            ImplItem::Fn(f) => Some(f.sig.ident.to_string()),
            _ => None,
        })
        .collect();
    let close = imp.brace_token.span.close().start();
    let Some(brace) = offset(text, close.line, close.column) else {
        bail!(
            "{}:{}: cannot locate the end of the impl block",
            path.display(),
            close.line
        );
    };
    let line_start = text[..brace].rfind('\n').map_or(0, |i| i + 1);
    let inline = !text[line_start..brace].trim().is_empty();
    Ok(ImplBlock {
        file: path.to_owned(),
        fns,
        insert_at: if inline { brace } else { line_start },
        brace_inline: inline,
    })
}

/// Byte offset of 1-based `line`, 0-based character `column` in `text`.
fn offset(text: &str, line: usize, column: usize) -> Option<usize> {
    let mut start = 0;
    for _ in 1..line {
        start += text[start..].find('\n')? + 1;
    }
    let rest = &text[start..];
    match rest.char_indices().nth(column) {
        Some((i, _)) => Some(start + i),
        None => (rest.chars().count() == column).then_some(text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("chimod-src-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("src/inner")).unwrap();
        d
    }

    #[test]
    fn finds_tasks_impls_and_insertion_points() {
        let d = scratch("scan");
        std::fs::write(
            d.join("src/lib.rs"),
            "mod tasks;\nmod inner;\n/// é\n#[chi_sdk::chimod]\nimpl C {\n    fn create() {}\n    \
             fn say_hello(&self) {}\n}\nimpl HelloClient { pub fn a(&self) {} }\n",
        )
        .unwrap();
        std::fs::write(
            d.join("src/tasks.rs"),
            "#[chi_sdk::task(method = 10)]\npub struct SayHelloTask;\n\
             #[task(method = 11, name = \"kOther\")]\npub struct Odd { x: u32 }\n",
        )
        .unwrap();
        std::fs::write(
            d.join("src/inner/mod.rs"),
            "mod deep { #[task(method = 12)] struct DeepTask; }\n",
        )
        .unwrap();
        let s = ModuleSource::scan(&d, Some("HelloClient")).unwrap();
        let keys: Vec<(&str, &str)> = s
            .tasks
            .iter()
            .map(|t| (t.name.as_str(), t.key.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("DeepTask", "kDeep"),
                ("SayHelloTask", "kSayHello"),
                ("Odd", "kOther")
            ]
        );
        assert_eq!(s.chimod.len(), 1);
        let c = &s.chimod[0];
        assert!(c.fns.contains("say_hello") && c.fns.contains("create"));
        let text = &s.file(&c.file).unwrap().text;
        assert!(!c.brace_inline);
        assert!(
            text[c.insert_at..].starts_with("}\nimpl HelloClient"),
            "{}",
            &text[c.insert_at..]
        );
        let cl = &s.client[0];
        assert!(cl.brace_inline);
        assert!(text[cl.insert_at..].starts_with("}\n"));
        assert!(s.tasks_file().unwrap().path.ends_with("src/tasks.rs"));
        let paths: Vec<&str> = s.files.iter().map(|f| f.module_path.as_str()).collect();
        assert_eq!(paths, ["crate::inner", "crate", "crate::tasks"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_that_does_not_parse_is_named() {
        let d = scratch("bad");
        std::fs::write(d.join("src/lib.rs"), "fn x( {}\n").unwrap();
        let e = ModuleSource::scan(&d, None).unwrap_err().to_string();
        assert!(
            e.contains("src/lib.rs:1:") && e.contains("fix it first"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn offsets_count_characters() {
        let t = "ab\néé}\n";
        assert_eq!(offset(t, 2, 2), Some(7));
        assert_eq!(&t[7..8], "}");
        assert_eq!(offset(t, 1, 0), Some(0));
    }
}
