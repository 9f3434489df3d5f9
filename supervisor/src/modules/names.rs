//! Module names and specifiers.
//!
//! A name is 1–100 characters of `[A-Za-z0-9._/-]`, starting with a letter, digit or
//! `_`, with no empty, `.` or `..` path segment, and is not a built-in (`http`). A
//! specifier is a name, or `name@N` to pin version N.

/// Longest module name.
pub const MAX_NAME_CHARS: usize = 100;

/// Names scripts reach without a shared module.
const BUILT_IN: &[&str] = &["http"];

/// Whether `name` may name a shared module.
pub fn valid_name(name: &str) -> bool {
    let Some(first) = name.chars().next() else {
        return false;
    };
    (first.is_ascii_alphanumeric() || first == '_')
        && name.len() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        && name.split('/').all(|seg| !matches!(seg, "" | "." | ".."))
        && !BUILT_IN.contains(&name)
}

/// What a script's specifier asks for: a module, at its current version or pinned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specifier {
    pub name: String,
    pub pinned: Option<u64>,
}

/// Parses `name` or `name@N`; `None` if it cannot be a shared module's specifier.
pub fn parse_specifier(spec: &str) -> Option<Specifier> {
    let (name, pinned) = match spec.split_once('@') {
        None => (spec, None),
        Some((name, v)) => {
            // Digits without a leading zero: one spelling per version.
            if v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (name, Some(v.parse::<u64>().ok()?))
        }
    };
    valid_name(name).then(|| Specifier {
        name: name.to_owned(),
        pinned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_paths() {
        for ok in [
            "lodash",
            "my-lib",
            "utils/date",
            "a.b_c",
            "_x",
            "v2/api-client",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "http", "./x", "../x", "/abs", "a//b", "a/./b", "a/../b", "x/", "a b", "a@1",
            "node:fs", "-x", ".hidden", "é", "a\0b",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_name(&"a".repeat(MAX_NAME_CHARS)));
        assert!(!valid_name(&"a".repeat(MAX_NAME_CHARS + 1)));
    }

    #[test]
    fn a_specifier_may_pin_a_version() {
        let spec = |name: &str, pinned| {
            Some(Specifier {
                name: name.into(),
                pinned,
            })
        };
        assert_eq!(parse_specifier("lib"), spec("lib", None));
        assert_eq!(parse_specifier("lib@3"), spec("lib", Some(3)));
        assert_eq!(parse_specifier("a/b@12"), spec("a/b", Some(12)));
        for bad in [
            "lib@", "lib@0", "lib@01", "lib@+1", "lib@x", "lib@1@2", "@1", "http@1", "./x",
        ] {
            assert_eq!(parse_specifier(bad), None, "{bad}");
        }
    }
}
