//! Hostfiles: one host name or address a line, with ranges.
//!
//! ```text
//! # comment
//! node[01-04]          # node01 node02 node03 node04
//! 10.0.0.[1-3]         # 10.0.0.1 10.0.0.2 10.0.0.3
//! rack[1-2]-n[7,9]     # rack1-n7 rack1-n9 rack2-n7 rack2-n9
//! ```
//!
//! A bracket holds comma-separated numbers and `lo-hi` ranges. A bound written with
//! leading zeros (`01`) sets the width every number of that range is padded to. Several
//! brackets in one name expand to every combination, left to right. A file lists at
//! most [`MAX_HOSTS`] hosts, each at most [`MAX_HOST_NAME`] characters long.

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use super::error::ConfigError;

/// At most this many hosts, so that a typo like `node[1-99999999]` fails fast.
pub const MAX_HOSTS: usize = 1 << 16;

/// Longest host name (a DNS name has at most 253 characters). Checked before a
/// line is expanded: with [`MAX_HOSTS`] it bounds what a hostfile can make
/// (16 MiB), where a long name times a range would otherwise ask for gigabytes.
pub const MAX_HOST_NAME: usize = 255;

/// Parses a hostfile's text into its list of hosts, in order. Errors name
/// `<hostfile>` as the file; [`load_hostfile`] names the real path.
pub fn parse_hostfile(text: &str) -> Result<Vec<String>, ConfigError> {
    parse_hostfile_named(text, "<hostfile>")
}

/// Reads and parses the hostfile at `path`.
pub fn load_hostfile(path: &Path) -> Result<Vec<String>, ConfigError> {
    use std::io::Read as _;
    let read_error = |source| ConfigError::Read {
        what: "hostfile",
        path: path.to_path_buf(),
        origin: String::new(),
        source,
    };
    // At most MAX_HOSTFILE_BYTES (+1 to tell a longer file): `/dev/zero` or a
    // huge file is an error, not the runtime's memory. Non-blocking, so that a
    // FIFO with no writer is read as empty instead of hanging the start.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_HOSTFILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => Ok(0),
            _ => Err(e),
        })
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_HOSTFILE_BYTES {
        return Err(read_error(std::io::Error::other(format!(
            "the hostfile is larger than {} MiB; list one host a line, with ranges such as \
             node[001-512]",
            MAX_HOSTFILE_BYTES >> 20
        ))));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e.to_string(),
        ))
    })?;
    parse_hostfile_named(&text, &path.display().to_string())
}

/// Largest hostfile read (16 MiB: the most hosts a file may list, at a name
/// of 255 characters).
pub const MAX_HOSTFILE_BYTES: u64 = 16 << 20;

pub(super) fn parse_hostfile_named(text: &str, file: &str) -> Result<Vec<String>, ConfigError> {
    let error = |line: usize, message: String| ConfigError::Hostfile {
        file: file.to_owned(),
        line,
        message,
        origin: String::new(),
    };
    let mut hosts = Vec::new();
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line_no = index + 1;
        let content = raw_line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        if content.contains(char::is_whitespace) {
            return Err(error(
                line_no,
                format!("`{content}` holds spaces; write one host a line"),
            ));
        }
        // Each bracket adds at least one character to every name: more brackets
        // than a name has characters can only fail (and would recurse deeply).
        if content.matches('[').count() > MAX_HOST_NAME {
            return Err(error(
                line_no,
                format!("more than {MAX_HOST_NAME} `[` in one name"),
            ));
        }
        let expanded = expand(content, MAX_HOSTS.saturating_sub(hosts.len()))
            .map_err(|message| error(line_no, format!("in `{content}`: {message}")))?;
        for host in expanded {
            if let Some(first) = first_seen.insert(host.clone(), line_no) {
                return Err(error(
                    line_no,
                    format!("host `{host}` is listed twice (first on line {first})"),
                ));
            }
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return Err(error(0, "the hostfile lists no host".to_owned()));
    }
    Ok(hosts)
}

/// Expands every bracket of `pattern`; at most `budget` names.
fn expand(pattern: &str, budget: usize) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        if pattern.contains(']') {
            return Err("`]` without `[`".to_owned());
        }
        if pattern.len() > MAX_HOST_NAME {
            return Err(too_long());
        }
        return Ok(vec![pattern.to_owned()]);
    };
    let prefix = &pattern[..open];
    if prefix.contains(']') {
        return Err("`]` without `[`".to_owned());
    }
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| "`[` without `]`".to_owned())?;
    let inside = &pattern[open + 1..close];
    if inside.contains('[') {
        return Err("nested `[`".to_owned());
    }
    let numbers = expand_bracket(inside, budget)?;
    let rest = expand(&pattern[close + 1..], budget)?;
    let total = numbers.len().saturating_mul(rest.len());
    if total > budget {
        return Err(format!("expands to more than {MAX_HOSTS} hosts"));
    }
    let longest = |v: &[String]| v.iter().map(String::len).max().unwrap_or(0);
    if prefix.len() + longest(&numbers) + longest(&rest) > MAX_HOST_NAME {
        return Err(too_long());
    }
    let mut out = Vec::with_capacity(total);
    for number in &numbers {
        for tail in &rest {
            out.push(format!("{prefix}{number}{tail}"));
        }
    }
    Ok(out)
}

/// Expands the inside of one bracket, `01-04,7`, into the numbers as text.
fn expand_bracket(inside: &str, budget: usize) -> Result<Vec<String>, String> {
    if inside.trim().is_empty() {
        return Err("empty `[]`".to_owned());
    }
    let mut out = Vec::new();
    for part in inside.split(',') {
        let (lo_text, hi_text) = part.split_once('-').unwrap_or((part, part));
        let lo = parse_bound(lo_text)?;
        let hi = parse_bound(hi_text)?;
        if lo > hi {
            return Err(format!("range `{part}` goes down ({lo} > {hi})"));
        }
        let width = if lo_text.len() > 1 && lo_text.starts_with('0') {
            lo_text.len()
        } else {
            0
        };
        if width > MAX_HOST_NAME {
            return Err(too_long());
        }
        if (hi - lo) as usize >= budget.saturating_sub(out.len()) {
            return Err(format!("expands to more than {MAX_HOSTS} hosts"));
        }
        out.extend((lo..=hi).map(|n| format!("{n:0width$}")));
    }
    Ok(out)
}

fn too_long() -> String {
    format!("makes host names longer than {MAX_HOST_NAME} characters")
}

fn parse_bound(text: &str) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}` is not a number (a range looks like `01-04`)"
        ));
    }
    text.parse().map_err(|_| format!("`{text}` is too large"))
}

/// Sets the `origin` of a hostfile error: which config key named the hostfile.
pub(super) fn with_origin(mut err: ConfigError, origin_text: String) -> ConfigError {
    match &mut err {
        ConfigError::Hostfile { origin, .. } | ConfigError::Read { origin, .. } => {
            *origin = origin_text;
        }
        _ => {}
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endless_or_huge_hostfiles_are_refused_and_fifos_do_not_hang() {
        let e = load_hostfile(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than 16 MiB"), "{e}");
        let dir = std::env::temp_dir().join(format!("chi-hostfile-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &dir,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        // Opened non-blocking with no writer: read as empty, no hang.
        let r = load_hostfile(&dir);
        let _ = std::fs::remove_file(&dir);
        // Read as empty: a hostfile with no host, reported as such (no hang).
        let e = r.unwrap_err().to_string();
        assert!(e.contains("no host"), "{e}");
    }

    fn hosts(text: &str) -> Vec<String> {
        parse_hostfile(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &str) -> String {
        match parse_hostfile(text) {
            Ok(h) => panic!("{text:?} should fail, got {h:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn plain_lines_comments_and_blanks() {
        let text = "# cluster\n\nnode-a\n  node-b  # the second\n\n127.0.0.1\n";
        assert_eq!(hosts(text), ["node-a", "node-b", "127.0.0.1"]);
    }

    #[test]
    fn ranges_keep_zero_padding() {
        assert_eq!(
            hosts("node[01-04]"),
            ["node01", "node02", "node03", "node04"]
        );
        assert_eq!(hosts("n[08-11]"), ["n08", "n09", "n10", "n11"]);
        assert_eq!(hosts("n[001-002]"), ["n001", "n002"]);
        assert_eq!(hosts("n[9-11]"), ["n9", "n10", "n11"]);
    }

    #[test]
    fn ip_ranges() {
        assert_eq!(hosts("10.0.0.[1-3]"), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(hosts("127.0.0.[1-2]\n"), ["127.0.0.1", "127.0.0.2"]);
    }

    #[test]
    fn lists_suffixes_and_several_brackets() {
        assert_eq!(hosts("node[1-2,7]"), ["node1", "node2", "node7"]);
        assert_eq!(hosts("node[1-2]-ib"), ["node1-ib", "node2-ib"]);
        assert_eq!(hosts("r[1-2]n[7,9]"), ["r1n7", "r1n9", "r2n7", "r2n9"]);
        assert_eq!(hosts("n[3]"), ["n3"]);
    }

    #[test]
    fn order_is_kept_across_lines() {
        assert_eq!(hosts("b\na[1-2]\nc"), ["b", "a1", "a2", "c"]);
    }

    #[test]
    fn errors_name_the_line() {
        assert!(err("ok\nnode[01-04\n").contains("<hostfile>:2:"));
        assert!(err("node01]").contains("`]` without `[`"));
        assert!(err("a\n\nnode[4-1]").contains("<hostfile>:3:"));
        assert!(err("node[4-1]").contains("goes down"));
        assert!(err("node[a-b]").contains("not a number"));
        assert!(err("node[]").contains("empty"));
        assert!(err("node[1-[2]]").contains("nested"));
        assert!(err("node1 node2").contains("one host a line"));
        assert!(err("node[1-99999999]").contains("more than"));
        assert!(err("a[1-300]b[1-300]").contains("more than"));
        // Long names are refused before they are multiplied by a range.
        let long = "h".repeat(MAX_HOST_NAME);
        assert_eq!(hosts(&long), std::slice::from_ref(&long));
        assert!(err(&format!("{long}x")).contains("longer than"));
        assert!(err(&format!("{long}[1-65536]")).contains("longer than"));
        assert!(err(&format!("n[{}-65535]", "0".repeat(300))).contains("longer than"));
        assert!(err(&"[1]".repeat(5000)).contains("`[` in one name"));
    }

    #[test]
    fn duplicates_and_empty_files_are_errors() {
        let e = err("node1\nnode[1-2]\n");
        assert!(
            e.contains("<hostfile>:2:") && e.contains("listed twice (first on line 1)"),
            "{e}"
        );
        assert!(err("# nothing\n\n").contains("lists no host"));
        assert!(err("").contains("lists no host"));
    }
}
