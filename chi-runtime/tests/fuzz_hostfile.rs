//! Fuzz target of the hostfile parser (see docs/verification.md, "Fuzzing"):
//! `parse_hostfile` on arbitrary text and lines of ranges, including huge ones
//! (`node[1-99999999]`), many brackets, long names. Checked: no panic; a
//! result has 1 to `MAX_HOSTS` distinct hosts without spaces, none longer than
//! a host name can be; an error names the hostfile and a line.
//!
//! Seeds: `tests/fuzz-corpus/hostfile/*`.

mod fuzzing;

use chi_runtime::config::{MAX_HOST_NAME, MAX_HOSTS, parse_hostfile};
use proptest::prelude::*;

fn check_hostfile(text: &str) -> Result<(), TestCaseError> {
    match parse_hostfile(text) {
        Ok(hosts) => {
            prop_assert!(
                !hosts.is_empty() && hosts.len() <= MAX_HOSTS,
                "{} hosts",
                hosts.len()
            );
            let mut seen = std::collections::HashSet::new();
            for h in &hosts {
                prop_assert!(!h.is_empty() && h.len() <= MAX_HOST_NAME, "host {:?}", h);
                prop_assert!(
                    !h.contains(char::is_whitespace) && !h.contains(['#', '[', ']']),
                    "host {:?}",
                    h
                );
                prop_assert!(seen.insert(h), "host {:?} twice", h);
            }
        }
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(shown.starts_with("<hostfile>"), "{}", shown);
            prop_assert_eq!(e.file(), Some("<hostfile>"));
            let lines = text.lines().count() as u64;
            prop_assert!(e.line().is_none_or(|l| l <= lines), "{}", shown);
        }
    }
    Ok(())
}

fn bound() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..20).prop_map(|n| n.to_string()),
        2 => (0u64..100_000).prop_map(|n| n.to_string()),
        1 => "0{1,4}[0-9]{1,3}",
        1 => Just("99999999".to_owned()),
        1 => Just("18446744073709551615".to_owned()),
        1 => Just("18446744073709551616".to_owned()),
        1 => Just(String::new()),
        1 => "[a-z+-]{1,2}",
    ]
}

fn bracket() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        2 => (bound(), bound()).prop_map(|(lo, hi)| format!("{lo}-{hi}")),
        1 => bound(),
    ];
    prop::collection::vec(part, 1..4).prop_map(|parts| format!("[{}]", parts.join(",")))
}

fn host_line() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(("[a-z0-9.-]{0,6}", prop::option::of(bracket())), 1..4).prop_map(|segs| {
            segs.into_iter()
                .map(|(lit, br)| format!("{lit}{}", br.unwrap_or_default()))
                .collect::<String>()
        }),
        1 => (1usize..600, prop::option::of(bracket())).prop_map(|(n, br)| format!("{}{}", "h".repeat(n), br.unwrap_or_default())),
        1 => (1usize..400).prop_map(|n| "[1]".repeat(n)),
        1 => "[a-z0-9 \\[\\],#-]{0,30}",
        1 => Just(String::new()),
        1 => "#.{0,20}",
    ]
}

fn hostfile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => any::<String>().prop_map(|s| s.chars().take(200).collect()),
        4 => prop::collection::vec(host_line(), 1..8).prop_map(|l| l.join("\n")),
    ]
}

proptest! {
    #![proptest_config(fuzzing::config("hostfile", 500))]

    #[test]
    fn fuzz_hostfile(text in hostfile_text()) {
        check_hostfile(&text)?;
    }
}

// ---------------------------------------------------------------------------
// The seed corpus.

#[test]
fn fuzz_hostfile_seeds() {
    for (file, bytes) in fuzzing::seeds("hostfile") {
        let text = String::from_utf8(bytes).expect("hostfile seeds are UTF-8");
        if let Err(e) = check_hostfile(&text) {
            panic!("seed {file}: {e}");
        }
        if text.contains("# expect: error") {
            assert!(parse_hostfile(&text).is_err(), "seed {file} was accepted");
        }
    }
}
