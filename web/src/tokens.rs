//! Named API tokens: how they are written (on the command line and in a token file),
//! what makes one valid, and how a presented bearer token is matched to its name.
//!
//! A token is a name (`[a-z0-9_-]{1,32}`, what the audit log records as the actor) and a
//! secret (printable ASCII without spaces: it travels in an HTTP header). Only the
//! secret's SHA-256 digest is kept, and a presented token is compared with every
//! digest in constant time, so neither the secret's length nor which token is closest
//! shows in the time of an answer.
//!
//! This module parses and matches; it never sees a request (that is [`crate::auth`]).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The name of a token given without one (`--auth-token SECRET`).
pub const DEFAULT_NAME: &str = "default";

/// The actor of a request from this machine to a server without tokens. Reserved: no
/// token may take it, so the audit log never confuses the two.
pub const LOCAL_ACTOR: &str = "local";

const MAX_NAME_CHARS: usize = 32;

/// One named token. Holds the secret's digest, never the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken {
    name: String,
    digest: [u8; 32],
}

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthToken")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AuthToken {
    /// A token named `name` with `secret`, both checked.
    pub fn new(name: &str, secret: &str) -> Result<AuthToken, String> {
        check_name(name)?;
        if secret.is_empty() {
            return Err(format!("the secret of token {name:?} is empty"));
        }
        // Errors never quote the secret, not even one character of it.
        if !secret.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!(
                "the secret of token {name:?} holds a space, a control character or a \
                 non-ASCII character; a secret must be printable ASCII without spaces, \
                 because it travels in an HTTP header"
            ));
        }
        Ok(AuthToken {
            name: name.to_owned(),
            digest: digest(secret),
        })
    }

    /// The command-line form: `NAME:SECRET`, or a bare `SECRET` for the token named
    /// `default`. The value is split at its first colon only when what comes before it
    /// is a valid name, so a bare secret may hold colons, and `default:SECRET` keeps any
    /// secret unambiguous.
    pub fn parse(value: &str) -> Result<AuthToken, String> {
        match value.split_once(':') {
            Some((name, secret)) if is_name(name) => AuthToken::new(name, secret),
            _ => AuthToken::new(DEFAULT_NAME, value),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Whether `name` has the shape of a name (reserved ones included).
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn check_name(name: &str) -> Result<(), String> {
    if !is_name(name) {
        return Err(format!(
            "token name {name:?} is not valid: use 1 to {MAX_NAME_CHARS} characters of \
             a-z 0-9 _ -"
        ));
    }
    if name == LOCAL_ACTOR {
        return Err(format!(
            "token name {LOCAL_ACTOR:?} is reserved for clients on this machine of a \
             server without tokens; pick another"
        ));
    }
    Ok(())
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A token file: one `NAME SECRET` per line (separated by spaces or tabs); blank lines
/// and lines starting with `#` are ignored. Errors name the line.
pub fn parse_file(text: &str) -> Result<Vec<AuthToken>, String> {
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |e: String| format!("line {}: {e}", i + 1);
        let Some((name, secret)) = line.split_once(|c: char| c.is_ascii_whitespace()) else {
            return Err(at("expected `NAME SECRET`".into()));
        };
        tokens.push(AuthToken::new(name, secret.trim()).map_err(at)?);
    }
    Ok(tokens)
}

/// Refuses two tokens with one name, or two names with one secret (a request could
/// not say who it is).
pub fn check_unique(tokens: &[AuthToken]) -> Result<(), String> {
    for (i, a) in tokens.iter().enumerate() {
        for b in &tokens[i + 1..] {
            if a.name == b.name {
                return Err(format!("two tokens are named {:?}", a.name));
            }
            if a.digest == b.digest {
                return Err(format!(
                    "tokens {:?} and {:?} have the same secret",
                    a.name, b.name
                ));
            }
        }
    }
    Ok(())
}

/// The name of the token whose secret is `presented`, if any. Every token is compared,
/// each in constant time.
pub fn identify<'a>(tokens: &'a [AuthToken], presented: &str) -> Option<&'a str> {
    let presented = digest(presented);
    let mut found = None;
    for t in tokens {
        if bool::from(t.digest.ct_eq(&presented)) {
            found = Some(t.name.as_str());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(value: &str) -> String {
        AuthToken::parse(value).expect_err(value)
    }

    #[test]
    fn flag_values() {
        let t = AuthToken::parse("ci:s3cret").expect("named");
        assert_eq!(t.name(), "ci");
        assert_eq!(identify(std::slice::from_ref(&t), "s3cret"), Some("ci"));
        assert_eq!(identify(&[t], "ci:s3cret"), None);
        // No colon, or a prefix that is not a name: the whole value is the secret.
        for value in ["s3cret", "Abc:def", "a.b:c", ":lead"] {
            let t = AuthToken::parse(value).expect(value);
            assert_eq!(t.name(), "default", "{value}");
            assert_eq!(identify(&[t], value), Some("default"), "{value}");
        }
        // Split at the first colon only: the secret keeps the rest.
        let t = AuthToken::parse("default:a:b:c").expect("colons");
        assert_eq!(identify(&[t], "a:b:c"), Some("default"));
    }

    #[test]
    fn bad_flag_values_say_what_is_wrong() {
        assert!(err("").contains("empty"), "{}", err(""));
        assert!(err("ci:").contains("secret of token \"ci\" is empty"));
        assert!(err("ops:has space").contains("printable ASCII"));
        assert!(err("x y:z").contains("printable ASCII"));
        assert!(err("caf\u{e9}").contains("printable ASCII"));
        assert!(err("local:abc").contains("reserved"));
        let long = format!("{}:abc", "a".repeat(33));
        // 33 characters are not a name, so this is the default token's secret.
        assert_eq!(AuthToken::parse(&long).expect("secret").name(), "default");
        assert!(
            AuthToken::new(&"a".repeat(33), "abc")
                .expect_err("long")
                .contains("1 to 32")
        );
        assert!(
            AuthToken::new("Ops", "abc")
                .expect_err("case")
                .contains("a-z")
        );
        assert!(
            AuthToken::new("", "abc")
                .expect_err("empty")
                .contains("a-z")
        );
    }

    #[test]
    fn token_files() {
        let text = "# tokens of the team\n\nci   s3cret-ci\n\talice\tpa:ss#word \n";
        let tokens = parse_file(text).expect("file");
        let names: Vec<_> = tokens.iter().map(AuthToken::name).collect();
        assert_eq!(names, ["ci", "alice"]);
        assert_eq!(identify(&tokens, "pa:ss#word"), Some("alice"));
        assert_eq!(identify(&tokens, "s3cret-ci"), Some("ci"));
        assert_eq!(identify(&tokens, "nope"), None);

        let e = parse_file("ci s3cret\njustasecret\n").expect_err("one word");
        assert!(e.starts_with("line 2:") && e.contains("NAME SECRET"), "{e}");
        let e = parse_file("Bad-Name x\n").expect_err("bad name");
        assert!(e.starts_with("line 1:") && e.contains("not valid"), "{e}");
        let e = parse_file("ok two words\n").expect_err("space in secret");
        assert!(e.contains("printable ASCII"), "{e}");
    }

    #[test]
    fn duplicates_are_refused() {
        let a = AuthToken::new("a", "one").expect("a");
        let b = AuthToken::new("b", "two").expect("b");
        assert!(check_unique(&[a.clone(), b.clone()]).is_ok());
        let a2 = AuthToken::new("a", "three").expect("a2");
        assert!(
            check_unique(&[a.clone(), b.clone(), a2])
                .expect_err("names")
                .contains("two tokens are named \"a\"")
        );
        let b2 = AuthToken::new("c", "two").expect("c");
        assert!(
            check_unique(&[a, b, b2])
                .expect_err("secrets")
                .contains("same secret")
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = AuthToken::parse("ci:hunter2").expect("token");
        let shown = format!("{t:?}");
        assert!(
            shown.contains("ci") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
