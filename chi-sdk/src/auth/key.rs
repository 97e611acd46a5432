//! The runtime's key: made at start, written to a private file, read by clients.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::dir::{check_private_dir, runtime_tag};
use super::{AuthError, RuntimeDir, current_uid, listener_uid};

/// Bytes of a key (256 bits).
pub const KEY_BYTES: usize = 32;

/// Longest key file accepted (the key in hex and a newline, with room to spare).
const MAX_KEY_FILE: u64 = 256;

/// The secret that a runtime's clients present (see the [module doc](super)).
///
/// Compared only in constant time ([`matches`](Self::matches)); never printed.
#[derive(Clone)]
pub struct ControlKey([u8; KEY_BYTES]);

impl std::fmt::Debug for ControlKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlKey(<secret>)")
    }
}

impl ControlKey {
    /// A fresh random key from `/dev/urandom`.
    pub fn generate() -> std::io::Result<ControlKey> {
        let mut k = [0u8; KEY_BYTES];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut k)?;
        Ok(ControlKey(k))
    }

    /// The key as 64 lowercase hex digits: what the key file holds and what a
    /// client presents.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<ControlKey> {
        // Digits only: `from_str_radix` alone would also take a sign (`+f`).
        if text.len() != 2 * KEY_BYTES || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut k = [0u8; KEY_BYTES];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(ControlKey(k))
    }

    /// Whether `presented` is this key in hex ([`to_hex`](Self::to_hex)). The time
    /// taken does not depend on where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let ours = self.to_hex();
        if presented.len() != ours.len() {
            // The length of a key is no secret.
            return false;
        }
        let diff = ours
            .bytes()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }

    /// Writes the key of the runtime of tag `tag` ([`runtime_tag`]: its port,
    /// or address and port) to `{dir}/{tag}.key` (mode 0600,
    /// `O_EXCL | O_NOFOLLOW`), first removing a stale key of this tag from every
    /// directory where clients look for it. The returned guard removes the file
    /// when dropped. Call it only while holding the port, so that no live
    /// runtime's key is removed.
    pub fn write(&self, dir: &RuntimeDir, tag: &str) -> Result<KeyFile, AuthError> {
        let uid = current_uid();
        for d in RuntimeDir::candidates(uid) {
            if check_private_dir(&d, uid).is_ok() {
                let stale = d.join(format!("{tag}.key"));
                match rustix::fs::unlink(&stale) {
                    Ok(()) => tracing::info!(path = %stale.display(), "removed a stale key file"),
                    Err(Errno::NOENT) => {}
                    Err(e) => {
                        return Err(AuthError::Io {
                            action: "removing the stale key file",
                            path: stale,
                            source: e.into(),
                        });
                    }
                }
            }
        }
        let path = dir.tagged_file(tag, "key");
        let io = |action, e: Errno| AuthError::Io {
            action,
            path: path.clone(),
            source: e.into(),
        };
        let fd = rustix::fs::open(
            &path,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )
        .map_err(|e| io("creating the key file", e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| io("checking the key file", e))?;
        let mut file = std::fs::File::from(fd);
        let guard = KeyFile {
            path: path.clone(),
            id: (st.st_dev, st.st_ino),
        };
        file.write_all(format!("{}\n", self.to_hex()).as_bytes())
            .map_err(|source| AuthError::Io {
                action: "writing the key file",
                path,
                source,
            })?;
        Ok(guard)
    }

    /// The key of the runtime listening on `addr:port`, for a client.
    ///
    /// The runtime's uid is the owner of the listening socket (when the kernel
    /// lists it; this process's uid otherwise). Another user's runtime is an
    /// [`AuthError::OtherUser`] at once, unless this process is root. The key is
    /// read from the first of [`RuntimeDir::candidates`] that has one; the
    /// directory and the file must belong to the runtime's uid and be private.
    pub fn find(addr: &str, port: u16) -> Result<ControlKey, AuthError> {
        let me = current_uid();
        let owner = addr
            .parse::<IpAddr>()
            .ok()
            .and_then(|ip| listener_uid(ip, port));
        let uid = match owner {
            Some(o) if o != me && me != 0 => {
                return Err(AuthError::OtherUser {
                    port,
                    owner: o,
                    you: me,
                    key_dir: RuntimeDir::candidates(o)
                        .into_iter()
                        .find(|d| rustix::fs::lstat(d).is_ok()),
                });
            }
            Some(o) => o,
            None => me,
        };
        let mut searched = Vec::new();
        let tag = runtime_tag(addr, port);
        for dir in RuntimeDir::candidates(uid) {
            let path = dir.join(format!("{tag}.key"));
            match check_private_dir(&dir, uid) {
                Ok(()) => {}
                Err(AuthError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    searched.push(path);
                    continue;
                }
                Err(e) => return Err(e),
            }
            match ControlKey::read(&path, uid) {
                Ok(k) => return Ok(k),
                Err(AuthError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    searched.push(path)
                }
                Err(e) => return Err(e),
            }
        }
        Err(AuthError::NoKey {
            port,
            uid,
            searched,
        })
    }

    /// Reads the key file `path`, which must be a regular file (not a symbolic
    /// link) owned by `uid`, without group or other access. A missing file is an
    /// [`AuthError::Io`] of kind `NotFound`.
    pub fn read(path: &Path, uid: u32) -> Result<ControlKey, AuthError> {
        let unsafe_file = |problem: String| AuthError::UnsafeFile {
            path: path.to_owned(),
            problem,
        };
        // NONBLOCK: a FIFO planted in the key's place must not hang the client.
        let fd = match rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e @ (Errno::ACCESS | Errno::PERM)) => {
                return Err(AuthError::KeyUnreadable {
                    path: path.to_owned(),
                    source: e.into(),
                });
            }
            Err(Errno::LOOP) => return Err(unsafe_file("it is a symbolic link".into())),
            Err(e) => {
                return Err(AuthError::Io {
                    action: "reading the key file",
                    path: path.to_owned(),
                    source: e.into(),
                });
            }
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| AuthError::Io {
            action: "checking the key file",
            path: path.to_owned(),
            source: e.into(),
        })?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(unsafe_file("it is not a regular file".into()));
        }
        if st.st_uid != uid {
            return Err(unsafe_file(format!(
                "it belongs to uid {}, not to the runtime's uid {uid}",
                st.st_uid
            )));
        }
        if st.st_mode & 0o077 != 0 {
            return Err(unsafe_file(format!(
                "its mode is {:04o}: group or others may read it",
                st.st_mode & 0o7777
            )));
        }
        let mut text = String::new();
        std::fs::File::from(fd)
            .take(MAX_KEY_FILE)
            .read_to_string(&mut text)
            .map_err(|source| AuthError::Io {
                action: "reading the key file",
                path: path.to_owned(),
                source,
            })?;
        ControlKey::from_hex(text.trim_end())
            .ok_or_else(|| unsafe_file("it does not hold a key (64 hex digits)".into()))
    }
}

/// A key file written by [`ControlKey::write`]; dropping it removes the file if
/// it is still the one written (a newer runtime's key is left alone).
#[derive(Debug)]
pub struct KeyFile {
    path: PathBuf,
    id: (u64, u64),
}

impl KeyFile {
    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        if let Ok(st) = rustix::fs::lstat(&self.path)
            && (st.st_dev, st.st_ino) == self.id
        {
            let _ = rustix::fs::unlink(&self.path);
        }
    }
}

// Real segments, processes, files or sockets: not under Miri (see
// scripts/check-miri.sh); run natively.
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn hex_round_trip_and_matching() {
        let k = ControlKey::generate().unwrap();
        let hex = k.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(k.matches(hex.as_bytes()));
        let back = ControlKey::from_hex(&hex).unwrap();
        assert!(back.matches(hex.as_bytes()));
        let mut wrong = hex.clone().into_bytes();
        wrong[63] = if wrong[63] == b'0' { b'1' } else { b'0' };
        assert!(!k.matches(&wrong));
        assert!(!k.matches(&hex.as_bytes()[..63]));
        assert!(!k.matches(b""));
        assert!(ControlKey::from_hex("zz").is_none());
        assert!(ControlKey::from_hex(&"g".repeat(64)).is_none());
        // `u8::from_str_radix` takes "+f"; a key is digits only.
        assert!(ControlKey::from_hex(&"+f".repeat(32)).is_none());
        assert_eq!(format!("{k:?}"), "ControlKey(<secret>)");
    }

    #[test]
    fn reading_checks_the_file() {
        let uid = current_uid();
        let d = std::env::temp_dir().join(format!("chi-auth-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        let k = ControlKey::generate().unwrap();
        let good = d.join("good.key");
        std::fs::write(&good, format!("{}\n", k.to_hex())).unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            ControlKey::read(&good, uid)
                .unwrap()
                .matches(k.to_hex().as_bytes())
        );

        let e = ControlKey::read(&good, uid + 1).unwrap_err().to_string();
        assert!(e.contains("belongs to uid"), "{e}");

        let open = d.join("open.key");
        std::fs::write(&open, k.to_hex()).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ControlKey::read(&open, uid).unwrap_err().to_string();
        assert!(e.contains("mode is 0644"), "{e}");

        let link = d.join("link.key");
        symlink(&good, &link).unwrap();
        let e = ControlKey::read(&link, uid).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");

        let junk = d.join("junk.key");
        std::fs::write(&junk, "not a key").unwrap();
        std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = ControlKey::read(&junk, uid).unwrap_err().to_string();
        assert!(e.contains("does not hold a key"), "{e}");

        let fifo = d.join("fifo.key");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::RUSR | Mode::WUSR,
            0,
        )
        .unwrap();
        let e = ControlKey::read(&fifo, uid).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");

        match ControlKey::read(&d.join("missing.key"), uid) {
            Err(AuthError::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
