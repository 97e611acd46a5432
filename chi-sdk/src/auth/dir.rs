//! The per-user directory of a runtime's key, pid and log files.

use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode};

use super::{AuthError, current_uid};

/// Name of the directory under `$XDG_RUNTIME_DIR`.
pub const DIR_NAME: &str = "chimaera";

/// The name a runtime's files (key, pid, log) and segments carry: its port,
/// or `{addr}-{port}` for a runtime on a loopback address other than
/// 127.0.0.1 (a node of a local cluster, where several runtimes of one user
/// share a machine and a port, each on its own 127.0.0.x).
///
/// A runtime computes it from the address it binds, a client from the
/// address it connects to: a runtime on 10.0.0.2, reached at 10.0.0.2 or on
/// loopback at 127.0.0.1, is `{port}` both ways.
pub fn runtime_tag(addr: &str, port: u16) -> String {
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) if a.is_loopback() && a != std::net::Ipv4Addr::LOCALHOST => {
            format!("{a}-{port}")
        }
        _ => port.to_string(),
    }
}

/// A directory private to one user (0700, owned by them, not a symbolic link)
/// holding the files of that user's runtimes: `{tag}.key`, `{tag}.pid`,
/// `{tag}.log`, where the tag is the port ([`runtime_tag`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeDir {
    path: PathBuf,
}

impl RuntimeDir {
    /// This user's directory, created if missing: `$XDG_RUNTIME_DIR/chimaera` if
    /// `XDG_RUNTIME_DIR` names a private directory of this user, else
    /// `/tmp/chimaera-{uid}`. Fails, saying why, unless the result is a real
    /// directory owned by this user without group or other access.
    pub fn ensure() -> Result<RuntimeDir, AuthError> {
        let uid = current_uid();
        let path = xdg_base(uid)
            .map(|b| b.join(DIR_NAME))
            .unwrap_or_else(|| tmp_dir(uid));
        match rustix::fs::mkdir(&path, Mode::RWXU) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                return Err(AuthError::Io {
                    action: "creating the runtime directory",
                    path,
                    source: e.into(),
                });
            }
        }
        check_private_dir(&path, uid)?;
        Ok(RuntimeDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `.{ext}` file of the runtime of tag `tag` ([`runtime_tag`]).
    pub fn tagged_file(&self, tag: &str, ext: &str) -> PathBuf {
        self.path.join(format!("{tag}.{ext}"))
    }

    /// The key file of the runtime on `port`.
    pub fn key_file(&self, port: u16) -> PathBuf {
        self.path.join(format!("{port}.key"))
    }

    /// The pid file of the daemon on `port`.
    pub fn pid_file(&self, port: u16) -> PathBuf {
        self.path.join(format!("{port}.pid"))
    }

    /// The log file of the daemon on `port`.
    pub fn log_file(&self, port: u16) -> PathBuf {
        self.path.join(format!("{port}.log"))
    }

    /// Where a runtime of `uid` may keep its files, in the order clients look:
    /// this process's `$XDG_RUNTIME_DIR/chimaera` (if `uid` is ours and the
    /// variable names a private directory), `/run/user/{uid}/chimaera` (the usual
    /// `XDG_RUNTIME_DIR` of a login session, so a client without the variable
    /// still finds a runtime started with it), `/tmp/chimaera-{uid}`. The
    /// directories may not exist.
    pub fn candidates(uid: u32) -> Vec<PathBuf> {
        let mut v = Vec::with_capacity(3);
        if uid == current_uid()
            && let Some(b) = xdg_base(uid)
        {
            v.push(b.join(DIR_NAME));
        }
        let run = Path::new("/run/user").join(uid.to_string()).join(DIR_NAME);
        if !v.contains(&run) {
            v.push(run);
        }
        v.push(tmp_dir(uid));
        v
    }
}

/// `/tmp/chimaera-{uid}`.
fn tmp_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/{DIR_NAME}-{uid}"))
}

/// `$XDG_RUNTIME_DIR`, if it is an absolute path to a private directory of `uid`.
fn xdg_base(uid: u32) -> Option<PathBuf> {
    let base = PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR")?);
    if !base.is_absolute() {
        return None;
    }
    match check_private_dir(&base, uid) {
        Ok(()) => Some(base),
        Err(e) => {
            tracing::debug!(error = %e, "not using XDG_RUNTIME_DIR");
            None
        }
    }
}

/// Fails unless `path` is a directory (not a symbolic link) owned by `uid` with
/// no group or other permission bits.
pub(crate) fn check_private_dir(path: &Path, uid: u32) -> Result<(), AuthError> {
    match dir_problem(path, uid, 0o077, "checking the runtime directory")? {
        None => Ok(()),
        Some(problem) => Err(AuthError::UnsafeDir {
            path: path.to_owned(),
            problem,
        }),
    }
}

/// What makes `path` unfit to hold a user's secret files: not a directory
/// (a symbolic link is not one), not owned by `uid`, or any of the mode bits
/// `forbidden` set (`0o077`: group or other access at all; `0o022`: their
/// writing); `None` if it is fit. `action` names the check in an I/O error.
pub(crate) fn dir_problem(
    path: &Path,
    uid: u32,
    forbidden: u32,
    action: &'static str,
) -> Result<Option<String>, AuthError> {
    let st = rustix::fs::lstat(path).map_err(|e| AuthError::Io {
        action,
        path: path.to_owned(),
        source: e.into(),
    })?;
    Ok(match FileType::from_raw_mode(st.st_mode) {
        FileType::Symlink => Some("it is a symbolic link".into()),
        FileType::Directory if st.st_uid != uid => Some(format!(
            "it belongs to uid {}, not to uid {uid} (another user may have created it to read or replace the runtime's files)",
            st.st_uid
        )),
        FileType::Directory if st.st_mode & forbidden != 0 => Some(format!(
            "its mode is {:04o}: group or others {}",
            st.st_mode & 0o7777,
            if forbidden & 0o044 != 0 {
                "have access"
            } else {
                "may write to it"
            }
        )),
        FileType::Directory => None,
        _ => Some("it is not a directory".into()),
    })
}

// Real segments, processes, files or sockets: not under Miri (see
// scripts/check-miri.sh); run natively.
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("chi-auth-dir-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        d
    }

    #[test]
    fn runtime_tags_tell_the_nodes_of_one_machine_apart() {
        assert_eq!(runtime_tag("127.0.0.1", 9513), "9513");
        assert_eq!(runtime_tag("10.0.0.2", 9513), "9513");
        assert_eq!(runtime_tag("node01", 9513), "9513");
        assert_eq!(runtime_tag("::1", 9513), "9513");
        assert_eq!(runtime_tag("127.0.0.2", 9513), "127.0.0.2-9513");
        assert_eq!(runtime_tag("127.1.2.3", 7), "127.1.2.3-7");
        let d = RuntimeDir {
            path: PathBuf::from("/x"),
        };
        assert_eq!(
            d.tagged_file("127.0.0.3-9513", "key"),
            Path::new("/x/127.0.0.3-9513.key")
        );
        assert_eq!(d.tagged_file("9513", "key"), d.key_file(9513));
    }

    #[test]
    fn private_directory_checks() {
        let uid = current_uid();
        let d = scratch("checks");
        let ok = d.join("ok");
        std::fs::create_dir(&ok).unwrap();
        std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o700)).unwrap();
        check_private_dir(&ok, uid).unwrap();

        let open = d.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = check_private_dir(&open, uid).unwrap_err().to_string();
        assert!(e.contains("mode is 0755"), "{e}");

        let link = d.join("link");
        symlink(&ok, &link).unwrap();
        let e = check_private_dir(&link, uid).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");

        let file = d.join("file");
        std::fs::write(&file, "x").unwrap();
        let e = check_private_dir(&file, uid).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");

        let e = check_private_dir(&ok, uid + 1).unwrap_err().to_string();
        assert!(e.contains(&format!("belongs to uid {uid}")), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn candidates_end_in_tmp() {
        let c = RuntimeDir::candidates(4242);
        assert_eq!(
            c,
            vec![
                PathBuf::from("/run/user/4242/chimaera"),
                PathBuf::from("/tmp/chimaera-4242")
            ]
        );
    }
}
