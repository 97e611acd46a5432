//! Who may talk to a runtime: its own user, and root.
//!
//! # Design
//!
//! The control socket is TCP on loopback, which every local user can reach, so
//! the socket alone cannot tell who is calling. Instead, a runtime proves its
//! clients with a secret that only its user can read:
//!
//! 1. **A private directory.** At start the runtime uses the per-user directory
//!    ([`RuntimeDir`]): `$XDG_RUNTIME_DIR/chimaera` if that variable names a
//!    private directory of this user, else `/tmp/chimaera-{uid}`. It is created
//!    with mode 0700 and, whether new or not, must be a real directory (not a
//!    symbolic link) owned by this uid without group or other access; otherwise
//!    the runtime refuses to start and says why. The daemon's pid and log files
//!    live there too.
//! 2. **A key per runtime.** Once the runtime holds its port, it writes 32 random
//!    bytes from `/dev/urandom` ([`ControlKey`]), as hex, to `{dir}/{port}.key`:
//!    mode 0600, created with `O_EXCL | O_NOFOLLOW` after removing a stale key of
//!    the same port. The file is removed when the runtime stops ([`KeyFile`]).
//! 3. **Checked before any message.** The control socket speaks ZeroMQ's PLAIN
//!    mechanism with the key as password, and the runtime answers ZeroMQ's
//!    authentication (ZAP) requests itself, comparing the key in constant time.
//!    A peer without the key is disconnected during the handshake: it cannot get
//!    a single message — not even an oversized one — into the runtime. Refusals
//!    are logged, at most a few a minute.
//! 4. **Clients read the key.** A client finds the uid that owns the listening
//!    socket (in `/proc/net/tcp`), and reads the key from that user's directory
//!    ([`ControlKey::find`]). Another user gets an error naming the runtime's uid
//!    at once; root can read every user's directory, so root may talk to every
//!    runtime; a runtime started by root keeps its key in root's 0700 directory,
//!    out of other users' reach. Before using a key file the client checks that
//!    it and its directory belong to the runtime's user and are private.
//!
//! The key is a capability: whoever can read it may register, query and stop the
//! runtime. It never appears in logs, errors or `Debug` output.
//!
//! The nodes of a cluster present a key to each other's peer sockets too:
//! one **cluster key** shared by all of them, kept in a file every node
//! reads ([`ControlKey::load_or_create`], `cluster.rs`).
//!
//! Runtimes of one user on one machine need distinct ports, unless each binds
//! its own loopback address (the nodes of a local cluster on 127.0.0.x): like
//! the segment names, the key file is named by the port, or by the address and
//! port for a runtime on a loopback address other than 127.0.0.1
//! ([`runtime_tag`]).

mod cluster;
mod dir;
mod key;
mod owner;

use std::path::PathBuf;

pub use cluster::default_cluster_key_file;
pub use dir::{DIR_NAME, RuntimeDir, runtime_tag};
pub use key::{ControlKey, KEY_BYTES, KeyFile};
pub use owner::listener_uid;

/// Why the runtime's directory or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The per-user directory is not private to its user.
    #[error(
        "refusing to use {path}: {problem}. It holds the runtime's key, pid and log files and must be a directory of its own user with mode 0700; remove it (or fix its owner and mode) and try again"
    )]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A key, pid or log file is not what it must be.
    #[error("refusing to use {path}: {problem}")]
    UnsafeFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("creating", "reading"…).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The key file exists but this user may not read it.
    #[error(
        "cannot read the runtime's key {path}: {source}; only the user who started the runtime (or root) may talk to it"
    )]
    KeyUnreadable {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime on the port belongs to another user.
    #[error(
        "not authorised: the runtime on port {port} was started by uid {owner}, and only that user (or root) may talk to it; its key{} is private to them and you are uid {you}. Start your own runtime on another port",
        key_dir.as_ref().map(|d| format!(" (in {})", d.display())).unwrap_or_default()
    )]
    OtherUser {
        /// The port.
        port: u16,
        /// The runtime's uid.
        owner: u32,
        /// This process's uid.
        you: u32,
        /// The directory of the runtime's key, if one of that user's exists.
        key_dir: Option<PathBuf>,
    },
    /// No key file of the port was found.
    #[error(
        "no key for the runtime on port {port} (looked for {}): no runtime of uid {uid} runs on this port, or it is still starting; only the user who started a runtime (or root) may talk to it",
        list(.searched)
    )]
    NoKey {
        /// The port.
        port: u16,
        /// The uid whose directories were searched.
        uid: u32,
        /// The key paths tried.
        searched: Vec<PathBuf>,
    },
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// This process's real uid.
pub fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}
