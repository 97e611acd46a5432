//! Diagnostics: how a problem is told, to a compiler user or to a terminal.
//!
//! * [`Problem`]: one thing wrong with a YAML file, naming the file and, when
//!   known, the line. `cargo chimod refresh` prints it as `file:line: message`;
//!   a macro turns it into a compile error with [`Problem::at`], so the same
//!   rule says the same thing in both places.
//! * [`combine`]: several `syn::Error`s as one, so that a macro reports every
//!   problem at once.
//! * [`show`]: a type as a user wrote it, for messages.
//!
//! This module depends on nothing else of the crate.

use std::fmt;
use std::path::PathBuf;

use proc_macro2::Span;
use syn::Type;

/// One thing wrong with a YAML file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line of what is wrong, when it is one line.
    pub line: Option<u64>,
    /// What is wrong and what to do, without the file and line.
    pub message: String,
}

impl Problem {
    /// A problem at `line` of `file`.
    pub fn at_line(file: impl Into<PathBuf>, line: u64, message: impl Into<String>) -> Problem {
        Problem {
            file: file.into(),
            line: Some(line),
            message: message.into(),
        }
    }

    /// A problem of `file` as a whole.
    pub fn in_file(file: impl Into<PathBuf>, message: impl Into<String>) -> Problem {
        Problem {
            file: file.into(),
            line: None,
            message: message.into(),
        }
    }

    /// The problem as a compile error at `span` (a YAML line has no span in
    /// the Rust source: the macro points at its attribute, and the message
    /// names the file and line).
    pub fn at(&self, span: Span) -> syn::Error {
        syn::Error::new(span, self.to_string())
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All of `errors` as one error, or `None`.
pub fn combine(errors: Vec<syn::Error>) -> Option<syn::Error> {
    errors.into_iter().reduce(|mut a, b| {
        a.combine(b);
        a
    })
}

/// `ty` as its author would write it: `Vec<u32>`, not `Vec < u32 >`.
pub fn show(ty: &Type) -> String {
    let s = quote::quote!(#ty).to_string();
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        if c == ' ' {
            let next = chars.peek().copied().unwrap_or(' ');
            let keep = !("<&[(*:".contains(prev) || "<>,;]):".contains(next));
            if keep {
                out.push(c);
            }
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    #[test]
    fn show_squeezes_token_spacing() {
        assert_eq!(show(&parse_quote!(Vec<u32>)), "Vec<u32>");
        assert_eq!(
            show(&parse_quote!(std::collections::HashMap<u32, String>)),
            "std::collections::HashMap<u32, String>"
        );
        assert_eq!(show(&parse_quote!(&'static str)), "&'static str");
        assert_eq!(show(&parse_quote!(*const u8)), "*const u8");
        assert_eq!(show(&parse_quote!([u8; 4])), "[u8; 4]");
    }

    #[test]
    fn a_problem_names_its_file_and_line() {
        assert_eq!(
            Problem::at_line("/m/chimaera_mod.yaml", 3, "`kA: 5`: too low").to_string(),
            "/m/chimaera_mod.yaml:3: `kA: 5`: too low"
        );
        assert_eq!(
            Problem::in_file("/m/chimaera_mod.yaml", "no `module_name`").to_string(),
            "/m/chimaera_mod.yaml: no `module_name`"
        );
    }

    #[test]
    fn combined_errors_keep_each_message() {
        let e = combine(vec![
            syn::Error::new(Span::call_site(), "a"),
            syn::Error::new(Span::call_site(), "b"),
        ])
        .unwrap();
        let msgs: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs, ["a", "b"]);
        assert!(combine(Vec::new()).is_none());
    }
}
