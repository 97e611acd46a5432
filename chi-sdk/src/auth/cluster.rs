//! The cluster key: the secret the nodes of a cluster present to each
//! other's peer sockets.
//!
//! # Design
//!
//! A runtime of a cluster accepts peer connections only from the hostfile's
//! addresses, but every process on those hosts can connect from them. So the
//! peer sockets, like the control socket, speak ZeroMQ's PLAIN mechanism with
//! a key as password, checked during the handshake: a process without the
//! key cannot get a frame into a runtime. Unlike a runtime's control key,
//! which is its own and made at start, the cluster key is shared by every
//! node, so it lives in a file every node reads: `cluster.key_file`, by
//! default `~/.chimaera/cluster.key` ([`default_cluster_key_file`]), which a
//! home directory shared between the nodes (the usual HPC setup) gives every
//! node at once.
//!
//! [`ControlKey::load_or_create`] reads it with the checks of a control key
//! (a regular file of this user, not a symbolic link, no group or other
//! access), or, when it does not exist, makes one: 32 random bytes as hex,
//! written to a private temporary file that is then hard-linked into place,
//! so that nodes starting together on a shared directory all end up with the
//! one key that got there first. The file stays: it is the cluster's
//! credential, as an SSH key is, for every later start.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::dir::dir_problem;
use super::{AuthError, ControlKey, current_uid};

/// Where the cluster key is kept unless `cluster.key_file` says otherwise:
/// `$HOME/.chimaera/cluster.key`; `None` without a home directory.
pub fn default_cluster_key_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".chimaera").join("cluster.key"))
}

impl ControlKey {
    /// The cluster key in `path`, made first if the file does not exist;
    /// `true` with it if this call made it. The file must be a regular file
    /// of this user, not a symbolic link, without group or other access. A
    /// new key is written to a private temporary file hard-linked into
    /// place, so that nodes starting together on a shared directory all
    /// read the one that got there first. A missing directory is created
    /// (mode 0700) if its parent exists.
    pub fn load_or_create(path: &Path) -> Result<(ControlKey, bool), AuthError> {
        let uid = current_uid();
        match ControlKey::read(path, uid) {
            Ok(k) => return Ok((k, false)),
            Err(AuthError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let io = |action, path: &Path, e: Errno| AuthError::Io {
            action,
            path: path.to_owned(),
            source: e.into(),
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        match rustix::fs::mkdir(dir, Mode::RWXU) {
            Ok(()) => {}
            Err(Errno::EXIST) => check_key_dir(dir, uid)?,
            Err(e) => return Err(io("creating the directory of the cluster key", dir, e)),
        }
        let key = ControlKey::generate().map_err(|source| AuthError::Io {
            action: "making a cluster key for",
            path: path.to_owned(),
            source,
        })?;
        let (tmp, file) = private_temp(dir, path)?;
        let written = write_synced(file, &key).map_err(|source| AuthError::Io {
            action: "writing the cluster key file",
            path: tmp.clone(),
            source,
        });
        // Into place only if nobody was first; the temporary name goes either way.
        let linked = written.and_then(|()| match rustix::fs::link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(io("creating the cluster key file", path, e)),
        });
        let _ = rustix::fs::unlink(&tmp);
        if linked? {
            return Ok((key, true));
        }
        ControlKey::read(path, uid).map(|k| (k, false))
    }
}

/// The directory of a key file that already existed: a real directory of
/// `uid` that nobody else may write to (else another user could put a key
/// of theirs in place first, or take ours away).
fn check_key_dir(dir: &Path, uid: u32) -> Result<(), AuthError> {
    match dir_problem(dir, uid, 0o022, "checking the directory of the cluster key")? {
        None => Ok(()),
        Some(problem) => Err(AuthError::UnsafeFile {
            path: dir.to_owned(),
            problem: format!("{problem}; the cluster key file needs a directory of its own user"),
        }),
    }
}

/// A new private file (mode 0600, `O_EXCL | O_NOFOLLOW`) beside `path` in
/// `dir`, under a name of its own: the process, a counter and random bytes
/// (nodes starting together on a shared directory may have one pid).
fn private_temp(dir: &Path, path: &Path) -> Result<(PathBuf, std::fs::File), AuthError> {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "cluster.key".into(), |n| n.to_string_lossy());
    let mut tries = 0;
    loop {
        // Relaxed: only a distinct number is needed.
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        // Random, and nothing of the key.
        let nonce = ControlKey::generate().map_err(|source| AuthError::Io {
            action: "making a temporary name in",
            path: dir.to_owned(),
            source,
        })?;
        let tmp = dir.join(format!(
            ".{name}.{}.{n}.{}",
            std::process::id(),
            &nonce.to_hex()[..16]
        ));
        match rustix::fs::open(
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        ) {
            Ok(fd) => return Ok((tmp, std::fs::File::from(fd))),
            Err(Errno::EXIST) if tries < 3 => tries += 1,
            Err(e) => {
                return Err(AuthError::Io {
                    action: "creating the cluster key file",
                    path: tmp,
                    source: e.into(),
                });
            }
        }
    }
}

/// Writes `key` to `file` and syncs it: a key file linked into place is
/// never empty, even after a crash of the machine.
fn write_synced(mut file: std::fs::File, key: &ControlKey) -> std::io::Result<()> {
    file.write_all(format!("{}\n", key.to_hex()).as_bytes())?;
    file.sync_all()
}

#[cfg(all(test, not(miri)))]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("chi-cluster-key-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_missing_key_is_made_private_once_and_then_read() {
        let d = scratch("make");
        let path = d.join("sub").join("cluster.key");
        let (k, made) = ControlKey::load_or_create(&path).unwrap();
        assert!(made);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(d.join("sub"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        let (again, made) = ControlKey::load_or_create(&path).unwrap();
        assert!(!made);
        assert_eq!(again.to_hex(), k.to_hex());
        // Nothing else left in the directory.
        assert_eq!(std::fs::read_dir(d.join("sub")).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn nodes_starting_together_agree_on_one_key() {
        let d = scratch("race");
        let path = d.join("cluster.key");
        let start = std::sync::Barrier::new(8);
        let keys: Vec<(String, bool)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        let (k, made) = ControlKey::load_or_create(&path).unwrap();
                        (k.to_hex(), made)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|(k, _)| *k == keys[0].0));
        assert_eq!(keys.iter().filter(|(_, made)| *made).count(), 1);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_key_file_others_may_read_or_a_link_is_refused() {
        let d = scratch("unsafe");
        let path = d.join("cluster.key");
        ControlKey::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ControlKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("group or others may read it"), "{e}");
        let link = d.join("link.key");
        symlink(&path, &link).unwrap();
        let e = ControlKey::load_or_create(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        std::fs::write(d.join("bad.key"), "not a key\n").unwrap();
        std::fs::set_permissions(d.join("bad.key"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let e = ControlKey::load_or_create(&d.join("bad.key"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("64 hex digits"), "{e}");
        // A directory others may write to is refused for a new key.
        let open = d.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ControlKey::load_or_create(&open.join("cluster.key"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("others may write to it"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
