//! The lock's rule: a method recorded in `chimaera_methods.lock` keeps its
//! id, and no other method takes it. [`apply_lock`] holds a checked module to
//! the lock file beside its repository's `chimaera_repo.yaml`; the words are
//! those `cargo chimod refresh` prints, since refresh runs the same check.

use std::collections::BTreeMap;
use std::path::Path;

use super::{CheckedModule, FIRST_CUSTOM, Problem};
use crate::lock::{LOCK_FILE, Lock};

/// Holds `checked` to the lock file at `path` (see the module doc): each
/// change of a recorded id is a problem, the recorded id wins, and a method
/// taking another's recorded id is left out.
pub(super) fn apply_lock(checked: &mut CheckedModule, path: &Path) {
    let lock = match Lock::load(path) {
        Ok(l) => l,
        Err(p) => {
            checked.problems.push(p);
            return;
        }
    };
    if path.is_file() {
        checked.lock_path = Some(path.to_owned());
    }
    let Some(lib) = checked.lib_name() else {
        return;
    };
    let Some(recorded) = lock.ids(&lib) else {
        return;
    };
    let file = checked.path.clone();
    let problems = &mut checked.problems;
    checked.methods.retain_mut(|m| {
        if !m.supported() {
            return true;
        }
        if let Some(&old) = recorded.get(&m.key) {
            if old != m.id {
                problems.push(Problem::at_line(
                    &file,
                    m.line,
                    renumbered(&lib, &m.key, old, m.id),
                ));
                m.id = old;
            }
            return true;
        }
        let Some((owner, _)) = recorded.iter().find(|(_, id)| **id == m.id) else {
            return true;
        };
        problems.push(Problem::at_line(
            &file,
            m.line,
            format!(
                "`{}: {}` of module {lib} takes the id of `{owner}` ({LOCK_FILE} records \
                 `{owner} = {}`). Ids are never reused, even after a method is removed: give \
                 `{}` an unused id (from {})",
                m.key,
                m.id,
                m.id,
                m.key,
                next_free(recorded)
            ),
        ));
        false
    });
    checked.locked = recorded.clone();
}

/// What to tell of `key` of module `lib`, which the lock records as `old` and
/// the YAML now gives `new`: the words of `cargo chimod refresh` and of the
/// macros alike.
pub fn renumbered(lib: &str, key: &str, old: i64, new: i64) -> String {
    format!(
        "`{key}` of module {lib} was renumbered: {LOCK_FILE} records id {old}, the YAML file now \
         says {new}. Method ids are permanent (clients and saved tasks use them): put back \
         `{key}: {old}`, or add a new method with a new id"
    )
}

/// The first custom id above every id of `recorded`: the id to give a new
/// method.
pub fn next_free(recorded: &BTreeMap<String, i64>) -> i64 {
    recorded
        .values()
        .max()
        .map_or(FIRST_CUSTOM, |max| (max + 1).max(FIRST_CUSTOM))
}

#[cfg(test)]
mod tests {
    use super::super::check_module_file;
    use super::*;
    use crate::yaml::REPO_YAML;

    fn text(c: &CheckedModule) -> String {
        let all: Vec<String> = c.problems.iter().map(ToString::to_string).collect();
        all.join("\n")
    }

    #[test]
    fn the_lock_beside_the_repository_wins() {
        let base = std::env::temp_dir().join(format!("chi-check-lock-{}", std::process::id()));
        let module = base.join("m");
        std::fs::create_dir_all(&module).unwrap();
        std::fs::write(base.join(REPO_YAML), "namespace: a\nmodules: [m]\n").unwrap();
        let lock = base.join(LOCK_FILE);
        std::fs::write(&lock, "[a_m]\nkCreate = 0\nkOld = 10\nkFoo = 11\n").unwrap();
        let path = module.join(crate::yaml::MOD_YAML);
        let write = |methods: &str| {
            std::fs::write(&path, format!("module_name: m\nkCreate: 0\n{methods}")).unwrap();
            check_module_file(&path).unwrap()
        };

        // Renumbered: refresh's words, and the recorded id is kept.
        let c = write("kFoo: 16\n");
        assert_eq!(c.lock_path.as_deref(), Some(lock.as_path()));
        assert_eq!(
            text(&c),
            format!(
                "{}:3: {}",
                path.display(),
                renumbered("a_m", "kFoo", 11, 16)
            )
        );
        let foo = c.methods.iter().find(|m| m.key == "kFoo").unwrap();
        assert_eq!(foo.id, 11);
        assert_eq!(c.locked.get("kOld"), Some(&10));

        // Reused: the method is left out; removed and unsupported are fine.
        let c = write("kNew: 10\nkFoo: -1\n");
        assert!(
            text(&c).contains("`kNew: 10` of module a_m takes the id of `kOld`")
                && text(&c).contains("an unused id (from 12)"),
            "{}",
            text(&c)
        );
        assert!(c.methods.iter().all(|m| m.key != "kNew"));
        assert!(c.rejected("kNew") && !c.rejected("kFoo"));

        // A damaged lock is a problem of its own.
        std::fs::write(&lock, "[a_m]\nkFoo = x\n").unwrap();
        let c = write("kFoo: 11\n");
        assert!(text(&c).contains("restore the file"), "{}", text(&c));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
