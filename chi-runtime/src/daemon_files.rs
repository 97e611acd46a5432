//! The daemon's pid and log files, opened without following symbolic links.
//!
//! By default both live in the per-user directory
//! ([`RuntimeDir`](chi_sdk::auth::RuntimeDir), mode 0700): `{port}.pid` and
//! `{port}.log`. Every path, default or given on the command line, is opened the
//! same careful way: with `O_NOFOLLOW`, so a symbolic link in the file's place is
//! refused, never followed; and the opened file must be a regular file owned by
//! this user with a single link (a hard link planted to another of our files is
//! refused too) before anything is truncated or written. New files get mode 0600.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

/// Opens `path` with `flags | O_NOFOLLOW | O_CLOEXEC` and checks what was opened.
fn open_checked(path: &Path, flags: OFlags, what: &str) -> Result<OwnedFd, OpenError> {
    let fd = rustix::fs::open(
        path,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )
    .map_err(|e| match e {
        Errno::LOOP => OpenError::Refused(format!(
            "refusing to open the {what} {}: it is a symbolic link, which is never followed (a link planted there could make the runtime overwrite another file); remove it, or choose another path",
            path.display()
        )),
        e => OpenError::Io(e),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(OpenError::Io)?;
    let refuse = |problem: String| {
        OpenError::Refused(format!(
            "refusing to use the {what} {}: {problem}; remove it, or choose another path",
            path.display()
        ))
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(refuse("it is not a regular file".into()));
    }
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me {
        return Err(refuse(format!(
            "it belongs to uid {}, not to you (uid {me})",
            st.st_uid
        )));
    }
    if st.st_nlink != 1 {
        return Err(refuse(format!(
            "it has {} hard links, so writing it would change another file",
            st.st_nlink
        )));
    }
    Ok(fd)
}

enum OpenError {
    Refused(String),
    Io(Errno),
}

impl OpenError {
    fn into_anyhow(self, action: &str, path: &Path) -> anyhow::Error {
        match self {
            OpenError::Refused(m) => anyhow::anyhow!(m),
            OpenError::Io(e) => anyhow::Error::new(std::io::Error::from(e))
                .context(format!("{action} {}", path.display())),
        }
    }
}

/// Opens (creating it if needed) the log file `path` for appending.
pub fn open_log(path: &Path) -> Result<File> {
    open_checked(
        path,
        OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE,
        "log file",
    )
    .map(File::from)
    .map_err(|e| e.into_anyhow("opening the log file", path))
}

/// A daemon's pid file, opened (and checked) before the daemon starts and
/// written once it is ready.
#[derive(Debug)]
pub struct PidFile {
    file: File,
    path: PathBuf,
    created: bool,
}

impl PidFile {
    /// Opens `path`, creating it if missing; an existing file is left as it is
    /// until [`write`](Self::write).
    pub fn open(path: &Path) -> Result<PidFile> {
        let fail = |e: OpenError| e.into_anyhow("opening the pid file", path);
        let (fd, created) = match open_checked(
            path,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            "pid file",
        ) {
            Ok(fd) => (fd, true),
            Err(OpenError::Io(Errno::EXIST)) => (
                open_checked(path, OFlags::WRONLY, "pid file").map_err(fail)?,
                false,
            ),
            Err(e) => return Err(fail(e)),
        };
        Ok(PidFile {
            file: File::from(fd),
            path: path.to_owned(),
            created,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces its content with `pid`.
    pub fn write(mut self, pid: u32) -> Result<()> {
        let ctx = || format!("writing the pid file {}", self.path.display());
        self.file.set_len(0).with_context(ctx)?;
        self.file
            .write_all(format!("{pid}\n").as_bytes())
            .with_context(ctx)?;
        Ok(())
    }

    /// The daemon did not start: removes the file if [`open`](Self::open)
    /// created it (an existing one, maybe a running daemon's, stays).
    pub fn discard(self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The pid in the pid file `path`, if it is a safe file holding one.
pub fn read_pid(path: &Path) -> Result<Option<u32>> {
    let fd = match open_checked(path, OFlags::RDONLY | OFlags::NONBLOCK, "pid file") {
        Ok(fd) => fd,
        Err(OpenError::Io(Errno::NOENT)) => return Ok(None),
        Err(e) => return Err(e.into_anyhow("reading the pid file", path)),
    };
    let mut text = String::new();
    File::from(fd)
        .take(64)
        .read_to_string(&mut text)
        .with_context(|| format!("reading the pid file {}", path.display()))?;
    Ok(text.trim().parse().ok())
}

/// Removes the pid file `path` if it names `pid`; returns whether it did.
pub fn remove_pid_file(path: &Path, pid: u32) -> bool {
    if matches!(read_pid(path), Ok(Some(p)) if p == pid) {
        return std::fs::remove_file(path).is_ok();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("chi-daemon-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        d
    }

    #[test]
    fn links_are_refused_and_targets_untouched() {
        let d = scratch("links");
        let victim = d.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let soft = d.join("soft.pid");
        symlink(&victim, &soft).unwrap();
        let e = PidFile::open(&soft).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let e = open_log(&soft).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let hard = d.join("hard.pid");
        std::fs::hard_link(&victim, &hard).unwrap();
        let e = PidFile::open(&hard).unwrap_err().to_string();
        assert!(e.contains("hard links"), "{e}");
        let e = open_log(&hard).unwrap_err().to_string();
        assert!(e.contains("hard links"), "{e}");
        let e = format!("{:#}", PidFile::open(&d).unwrap_err());
        assert!(
            e.contains("not a regular file") || e.contains("directory"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn pid_file_life() {
        use std::os::unix::fs::PermissionsExt;
        let d = scratch("life");
        let p = d.join("x.pid");
        let f = PidFile::open(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        f.write(1234).unwrap();
        assert_eq!(read_pid(&p).unwrap(), Some(1234));
        // An existing file is kept by a discarded open, replaced by a write.
        PidFile::open(&p).unwrap().discard();
        assert_eq!(read_pid(&p).unwrap(), Some(1234));
        PidFile::open(&p).unwrap().write(56).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "56\n");
        assert!(!remove_pid_file(&p, 1234));
        assert!(remove_pid_file(&p, 56));
        assert_eq!(read_pid(&p).unwrap(), None);
        // A file created by a discarded open is removed.
        PidFile::open(&p).unwrap().discard();
        assert!(!p.exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
