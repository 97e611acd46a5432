//! Removing items from Rust source text, for `remove-method`: whole lines of
//! the items `syn` found (their doc comments and attributes included), then the
//! names of private `use` items that only the removed code used.
//!
//! Nothing is reformatted: lines outside the removed items are kept as they
//! are, except a `use` item that loses some of its names, which is rewritten on
//! one line (`use a::{B, C};`).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Result, bail};
use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Item, UseTree, Visibility};

/// 1-based first and last line of an item, attributes and doc comments
/// included.
pub fn lines_of(item: &impl Spanned) -> (usize, usize) {
    let span = item.span();
    (span.start().line, span.end().line)
}

/// Every identifier in `tokens`, nested groups included.
pub fn idents(tokens: TokenStream, out: &mut BTreeSet<String>) {
    for t in tokens {
        match t {
            TokenTree::Ident(i) => {
                out.insert(i.to_string());
            }
            TokenTree::Group(g) => idents(g.stream(), out),
            _ => {}
        }
    }
}

/// Whether `tokens` name any of `names`.
pub fn mentions(tokens: TokenStream, names: &[String]) -> bool {
    let mut found = BTreeSet::new();
    idents(tokens, &mut found);
    names.iter().any(|n| found.contains(n))
}

/// `text` without the 1-based inclusive line ranges `ranges`. A blank line
/// left between a removed range and a blank line, a closing brace or the end of
/// the file goes too, and so does one left right after an opening brace, so
/// no double blank lines remain and a block does not open on one.
pub fn remove_lines(text: &str, ranges: &[(usize, usize)]) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut gone = vec![false; lines.len() + 2];
    for &(a, b) in ranges {
        for g in gone.iter_mut().take(b.min(lines.len()) + 1).skip(a) {
            *g = true;
        }
    }
    let blank = |n: usize| lines.get(n - 1).is_some_and(|l| l.trim().is_empty());
    for &(a, b) in ranges {
        let mut next = b + 1;
        while next <= lines.len() && gone[next] {
            next += 1;
        }
        let closes =
            next > lines.len() || blank(next) || lines[next - 1].trim_start().starts_with('}');
        let mut prev = a.saturating_sub(1);
        while prev >= 1 && gone[prev] {
            prev -= 1;
        }
        if prev >= 1 && blank(prev) && closes {
            gone[prev] = true;
        } else if next <= lines.len()
            && blank(next)
            && (prev == 0 || lines[prev - 1].trim_end().ends_with('{'))
        {
            gone[next] = true;
        }
    }
    lines
        .iter()
        .enumerate()
        .filter(|(i, _)| !gone[i + 1])
        .map(|(_, l)| *l)
        .collect()
}

/// The identifiers that the items of `file` other than private `use` items
/// name.
pub fn used_names(file: &syn::File) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for item in &file.items {
        if matches!(item, Item::Use(u) if matches!(u.vis, Visibility::Inherited)) {
            continue;
        }
        idents(item.to_token_stream(), &mut out);
    }
    out
}

/// `text` (the file `path` after removals) without the names of its private
/// top-level `use` items that were used before (`before`) and are not any
/// more. Returns the new text and the names dropped.
pub fn prune_uses(
    path: &Path,
    text: &str,
    before: &BTreeSet<String>,
) -> Result<(String, Vec<String>)> {
    let file = parse(path, text)?;
    let after = used_names(&file);
    let stale = |name: &str| before.contains(name) && !after.contains(name);
    let mut edits: Vec<((usize, usize), Option<String>)> = Vec::new();
    let mut dropped = Vec::new();
    for item in &file.items {
        let Item::Use(u) = item else { continue };
        if !matches!(u.vis, Visibility::Inherited) || !u.attrs.is_empty() {
            continue;
        }
        let mut names = Vec::new();
        let kept = prune(&u.tree, &stale, &mut names);
        if names.is_empty() {
            continue;
        }
        dropped.extend(names);
        let colons = if u.leading_colon.is_some() { "::" } else { "" };
        let line = kept.map(|t| format!("use {colons}{};\n", render(&t)));
        edits.push((lines_of(u), line));
    }
    if edits.is_empty() {
        return Ok((text.to_owned(), dropped));
    }
    // Rewrite or remove the lines of each pruned `use`. A rewritten item
    // keeps its first line's place; its other lines are marked, so the line
    // numbers of the removals hold, and dropped at the end.
    const GONE: &str = "\u{0}\n";
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    let mut removed = Vec::new();
    for ((a, b), line) in edits {
        match line {
            Some(l) => {
                lines[a - 1] = l;
                for x in lines.iter_mut().take(b).skip(a) {
                    *x = GONE.to_owned();
                }
            }
            None => removed.push((a, b)),
        }
    }
    let out: String = remove_lines(&lines.concat(), &removed)
        .split_inclusive('\n')
        .filter(|l| *l != GONE)
        .collect();
    Ok((out, dropped))
}

/// `tree` without the names `stale` says are stale (recorded in `dropped`);
/// `None` if nothing is left.
fn prune(
    tree: &UseTree,
    stale: &dyn Fn(&str) -> bool,
    dropped: &mut Vec<String>,
) -> Option<UseTree> {
    match tree {
        UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name != "self" && stale(&name) {
                dropped.push(name);
                return None;
            }
            Some(tree.clone())
        }
        UseTree::Rename(r) => {
            let name = r.rename.to_string();
            if name != "_" && stale(&name) {
                dropped.push(name);
                return None;
            }
            Some(tree.clone())
        }
        UseTree::Glob(_) => Some(tree.clone()),
        UseTree::Path(p) => {
            let inner = prune(&p.tree, stale, dropped)?;
            let mut p = p.clone();
            *p.tree = inner;
            Some(UseTree::Path(p))
        }
        UseTree::Group(g) => {
            let mut g = g.clone();
            let items: Vec<UseTree> = g
                .items
                .iter()
                .filter_map(|t| prune(t, stale, dropped))
                .collect();
            if items.is_empty() {
                return None;
            }
            g.items = items.into_iter().collect();
            Some(UseTree::Group(g))
        }
    }
}

/// A use tree as one line of text.
fn render(tree: &UseTree) -> String {
    match tree {
        UseTree::Name(n) => n.ident.to_string(),
        UseTree::Rename(r) => format!("{} as {}", r.ident, r.rename),
        UseTree::Glob(_) => "*".to_owned(),
        UseTree::Path(p) => format!("{}::{}", p.ident, render(&p.tree)),
        UseTree::Group(g) => match g.items.len() {
            1 => render(&g.items[0]),
            _ => format!(
                "{{{}}}",
                g.items.iter().map(render).collect::<Vec<_>>().join(", ")
            ),
        },
    }
}

/// Parses `text`, the content of `path`.
pub fn parse(path: &Path, text: &str) -> Result<syn::File> {
    match syn::parse_file(text) {
        Ok(f) => Ok(f),
        Err(e) => {
            let at = e.span().start();
            bail!(
                "cannot parse {}:{}:{}: {e}; fix it first (remove-method only edits files that \
                 parse)",
                path.display(),
                at.line,
                at.column + 1
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_lines_take_a_blank_line_with_them() {
        let t = "a\n\nb1\nb2\n\nc\n";
        assert_eq!(remove_lines(t, &[(3, 4)]), "a\n\nc\n");
        let t = "impl X {\n    fn a() {}\n\n    fn b() {}\n}\n";
        assert_eq!(remove_lines(t, &[(4, 4)]), "impl X {\n    fn a() {}\n}\n");
        assert_eq!(remove_lines("x\n\ny\n", &[(3, 3)]), "x\n");
        let t = "impl X {\n    fn a() {}\n\n    fn b() {}\n}\n";
        assert_eq!(remove_lines(t, &[(2, 2)]), "impl X {\n    fn b() {}\n}\n");
        assert_eq!(remove_lines("a\n\nb\n", &[(1, 1)]), "b\n");
    }

    #[test]
    fn only_names_the_removed_code_used_are_pruned() {
        let before_text = "use a::{B, C, D};\nuse e::F;\npub use g::H;\nuse i::*;\n\
                           fn one(_: B, _: C, _: F, _: H) {}\n";
        let file = syn::parse_file(before_text).unwrap();
        let before = used_names(&file);
        // `one` now uses B only; D was never used, so it is left alone.
        let text = before_text.replace("fn one(_: B, _: C, _: F, _: H)", "fn one(_: B)");
        let (out, dropped) = prune_uses(Path::new("x.rs"), &text, &before).unwrap();
        assert_eq!(dropped, ["C", "F"]);
        assert_eq!(
            out,
            "use a::{B, D};\npub use g::H;\nuse i::*;\nfn one(_: B) {}\n"
        );
    }
}
