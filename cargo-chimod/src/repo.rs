//! A module repository on disk: its `chimaera_repo.yaml` (namespace and module
//! list), its workspace `Cargo.toml`, and the edits `new --module` makes to
//! both. Edits keep the files' comments and layout: one line is inserted into
//! the YAML, and the TOML goes through `toml_edit`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chi_macros_backend::yaml::REPO_YAML;
use serde::Deserialize;

/// The repository's workspace manifest.
pub const CARGO_TOML: &str = "Cargo.toml";

/// The parts of `chimaera_repo.yaml` this tool reads (other keys are kept).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RepoYaml {
    /// The namespace of every module of the repository.
    pub namespace: Option<String>,
    /// The module directories, relative to the repository root (`modules:`
    /// with no items is an empty list).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub modules: Vec<String>,
}

/// An opened repository.
#[derive(Debug, Clone)]
pub struct Repo {
    /// The directory holding `chimaera_repo.yaml`.
    pub root: PathBuf,
    /// Its content.
    pub yaml: RepoYaml,
}

impl Repo {
    /// The repository `start` is in: the nearest directory at or above it
    /// holding a `chimaera_repo.yaml`.
    pub fn find(start: &Path) -> Result<Repo> {
        let abs = std::path::absolute(start)
            .with_context(|| format!("cannot resolve {}", start.display()))?;
        let Some(root) = abs.ancestors().find(|d| d.join(REPO_YAML).is_file()) else {
            bail!(
                "{} is not inside a module repository (no {REPO_YAML} there or above): run this \
                 in a repository made by `cargo chimod new <dir>`, or pass --repo <dir>",
                abs.display()
            );
        };
        Repo::open(root)
    }

    /// The repository whose root is `root`.
    pub fn open(root: &Path) -> Result<Repo> {
        let path = root.join(REPO_YAML);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let yaml = parse_repo_yaml(&path, &text)?;
        Ok(Repo {
            root: root.to_owned(),
            yaml,
        })
    }

    /// `chimaera_repo.yaml`.
    pub fn yaml_path(&self) -> PathBuf {
        self.root.join(REPO_YAML)
    }

    /// The namespace, or an error saying how to set it.
    pub fn namespace(&self) -> Result<&str> {
        self.yaml.namespace.as_deref().with_context(|| {
            format!(
                "{} has no `namespace`: add e.g. `namespace: chimaera`",
                self.yaml_path().display()
            )
        })
    }
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Parses the text of a `chimaera_repo.yaml`.
pub fn parse_repo_yaml(path: &Path, text: &str) -> Result<RepoYaml> {
    if text.trim().is_empty() {
        return Ok(RepoYaml::default());
    }
    serde_saphyr::from_str::<Option<RepoYaml>>(text)
        .map(Option::unwrap_or_default)
        .map_err(|e| {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first).to_owned();
            anyhow::anyhow!(
                "cannot parse {}: {first} (expected `namespace: <name>` and `modules:` with a list \
                 of module directories)",
                path.display()
            )
        })
}

/// `text` (a `chimaera_repo.yaml`) with `module` appended to its `modules:`
/// list, created if missing. Block lists get a `  - module` line after their
/// last item; a one-line flow list (`modules: [a]`) gets `, module`.
pub fn add_module_to_yaml(path: &Path, text: &str, module: &str) -> Result<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let at = lines.iter().position(|l| {
        l.strip_prefix("modules")
            .is_some_and(|r| r.trim_start().starts_with(':'))
    });
    match at {
        None => {
            while lines.last().is_some_and(|l| l.trim().is_empty()) {
                lines.pop();
            }
            lines.push("modules:".into());
            lines.push(format!("  - {module}"));
        }
        Some(i) => {
            let after = lines[i].split_once(':').map_or("", |(_, r)| r);
            let (value, comment) = match after.find(" #") {
                Some(c) => (&after[..c], &after[c..]),
                None => (after, ""),
            };
            let value = value.trim();
            if value.is_empty() {
                // A block list: after the last `- item` of the indented block.
                let mut last_item = None;
                let mut indent = "  ".to_owned();
                for (j, l) in lines.iter().enumerate().skip(i + 1) {
                    let t = l.trim_start();
                    if t.is_empty() || t.starts_with('#') {
                        continue;
                    }
                    if t.starts_with('-') && (l.starts_with(' ') || l.starts_with('-')) {
                        last_item = Some(j);
                        indent = l[..l.len() - t.len()].to_owned();
                        continue;
                    }
                    break;
                }
                let line = format!("{indent}- {module}");
                match last_item {
                    Some(j) => lines.insert(j + 1, line),
                    None => lines.insert(i + 1, line),
                }
            } else if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                let mut items: Vec<&str> = inner
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                items.push(module);
                lines[i] = format!("modules: [{}]{comment}", items.join(", "));
            } else {
                bail!(
                    "cannot add `{module}` to the `modules:` of {}: its value is neither a list nor \
                     empty; make it a list and add `  - {module}` by hand",
                    path.display()
                );
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    let check = parse_repo_yaml(path, &out)?;
    if !check.modules.iter().any(|m| m == module) {
        bail!(
            "cannot add `{module}` to the `modules:` list of {}: add `  - {module}` to it by hand",
            path.display()
        );
    }
    Ok(out)
}

/// `text` (a workspace `Cargo.toml`) with `member` in `workspace.members`, and
/// `chi-sdk = sdk` in `workspace.dependencies` if chi-sdk is not there yet.
pub fn add_workspace_member(path: &Path, text: &str, member: &str, sdk: &str) -> Result<String> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("cannot parse {}", path.display()))?;
    let ws = doc
        .entry("workspace")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_like_mut()
        .with_context(|| format!("{}: `workspace` is not a table", path.display()))?;
    let members = ws
        .entry("members")
        .or_insert(toml_edit::value(toml_edit::Array::new()))
        .as_array_mut()
        .with_context(|| format!("{}: `workspace.members` is not an array", path.display()))?;
    if !members.iter().any(|m| m.as_str() == Some(member)) {
        members.push(member);
    }
    let deps = ws
        .entry("dependencies")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_like_mut()
        .with_context(|| {
            format!(
                "{}: `workspace.dependencies` is not a table",
                path.display()
            )
        })?;
    if deps.get("chi-sdk").is_none() {
        let v: toml_edit::Value = sdk
            .parse()
            .with_context(|| format!("bad chi-sdk dependency `{sdk}`"))?;
        deps.insert("chi-sdk", toml_edit::Item::Value(v));
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(text: &str) -> String {
        add_module_to_yaml(Path::new("r.yaml"), text, "new_mod").unwrap()
    }

    #[test]
    fn modules_are_appended_to_block_lists() {
        let t = "# repo\nnamespace: a\nmodules:\n  - one # first\n\n  - two\nversion: 1\n";
        assert_eq!(
            add(t),
            "# repo\nnamespace: a\nmodules:\n  - one # first\n\n  - two\n  - new_mod\nversion: 1\n"
        );
        assert_eq!(add("modules:\n- one\n"), "modules:\n- one\n- new_mod\n");
        assert_eq!(
            add("namespace: a\nmodules:\n"),
            "namespace: a\nmodules:\n  - new_mod\n"
        );
    }

    #[test]
    fn flow_lists_and_missing_lists() {
        assert_eq!(add("modules: []\n"), "modules: [new_mod]\n");
        assert_eq!(
            add("modules: [a, b] # mine\n"),
            "modules: [a, b, new_mod] # mine\n"
        );
        assert_eq!(
            add("namespace: a\n\n"),
            "namespace: a\nmodules:\n  - new_mod\n"
        );
        let e = add_module_to_yaml(Path::new("r.yaml"), "modules: 3\n", "m").unwrap_err();
        assert!(e.to_string().contains("by hand"), "{e}");
    }

    #[test]
    fn an_empty_module_list_is_empty() {
        let p = Path::new("r.yaml");
        assert!(
            parse_repo_yaml(p, "namespace: a\nmodules:\n")
                .unwrap()
                .modules
                .is_empty()
        );
        assert!(parse_repo_yaml(p, "").unwrap().modules.is_empty());
        let e = parse_repo_yaml(p, "modules: 3\n").unwrap_err().to_string();
        assert!(e.contains("cannot parse r.yaml"), "{e}");
    }

    #[test]
    fn workspace_members_keep_the_layout() {
        let t = "# mine\n[workspace]\nresolver = \"3\"\nmembers = [\"a\"] # list\n\n\
                 [workspace.dependencies]\nchi-sdk = \"1\"\n";
        let out = add_workspace_member(Path::new("C"), t, "b", "\"2\"").unwrap();
        assert_eq!(
            out,
            "# mine\n[workspace]\nresolver = \"3\"\nmembers = [\"a\", \"b\"] # list\n\n\
             [workspace.dependencies]\nchi-sdk = \"1\"\n"
        );
        let again = add_workspace_member(Path::new("C"), &out, "b", "\"2\"").unwrap();
        assert_eq!(again, out);
        let fresh = add_workspace_member(Path::new("C"), "", "m", "{ path = \"/s\" }").unwrap();
        assert!(fresh.contains("members = [\"m\"]"), "{fresh}");
        assert!(fresh.contains("chi-sdk = { path = \"/s\" }"), "{fresh}");
    }
}
