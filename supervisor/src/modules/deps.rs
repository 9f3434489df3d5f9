//! Which shared modules a source asks for: the string literals it passes to
//! `require(…)`, `import(…)`, `import '…'` and `… from '…'`.
//!
//! A lexical scan, not a parse: a specifier computed at run time is not seen (its
//! `require` fails with `MODULE_NOT_FOUND`), and a look-alike inside a comment or a
//! string is seen (which only sends a module the run does not use). Every quote is
//! tried as the start of a literal, so one odd string cannot hide the rest.

/// The distinct specifiers in `source`, in order of first appearance.
pub fn specifiers(source: &str) -> Vec<String> {
    let bytes = source.as_bytes();
    let mut out: Vec<String> = Vec::new();
    for (i, &q) in bytes.iter().enumerate() {
        if !matches!(q, b'\'' | b'"' | b'`') {
            continue;
        }
        let Some(literal) = literal_at(source, i) else {
            continue;
        };
        if is_specifier_position(&source[..i]) && !out.iter().any(|s| s == literal) {
            out.push(literal.to_owned());
        }
    }
    out
}

/// The content of a short, plain string literal opening at byte `i`.
fn literal_at(source: &str, i: usize) -> Option<&str> {
    let q = source.as_bytes()[i];
    let rest = &source[i + 1..];
    let end = rest.bytes().take(256).position(|b| b == q)?;
    let content = &rest[..end];
    let interpolated = q == b'`' && content.contains("${");
    let odd = content.is_empty() || content.contains(['\\', '\n', '\r']) || interpolated;
    (!odd).then_some(content)
}

/// Whether a literal following `before` is a module specifier.
fn is_specifier_position(before: &str) -> bool {
    let before = before.trim_end();
    if let Some(call) = before.strip_suffix('(') {
        let word = last_word(call.trim_end());
        return word == "require" || word == "import";
    }
    let word = last_word(before);
    word == "from" || word == "import"
}

/// The identifier that `s` ends with, if it is a whole word.
fn last_word(s: &str) -> &str {
    let start = s
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_' || *c == '$')
        .last()
        .map_or(s.len(), |(i, _)| i);
    let word = &s[start..];
    // `obj.require('x')` is somebody else's function; `.import` too.
    if s[..start].ends_with('.') { "" } else { word }
}

#[cfg(test)]
mod tests {
    use super::specifiers;

    #[test]
    fn finds_every_static_form() {
        let src = r#"
            import a from 'lib-a';
            import { b } from "lib-b";
            import * as c from 'lib-c'
            import 'side-effect';
            export { d } from 'lib-d';
            const e = require('lib-e');
            const f = require ( "lib-f@2" );
            const g = await import(`lib-g`);
            const again = require('lib-a');
        "#;
        assert_eq!(
            specifiers(src),
            [
                "lib-a",
                "lib-b",
                "lib-c",
                "side-effect",
                "lib-d",
                "lib-e",
                "lib-f@2",
                "lib-g"
            ]
        );
    }

    #[test]
    fn ignores_what_is_not_a_specifier() {
        let src = r#"
            const s = 'from';
            console.log("x", 'y');
            obj.require('not-a-module');
            myrequire('nope');
            const t = `${x}`;
            require(name);
            require(`lib-${v}`);
            const from = 'not a specifier either';
        "#;
        assert_eq!(specifiers(src), Vec::<String>::new());
    }

    #[test]
    fn an_odd_string_does_not_hide_a_require() {
        let src = "console.log(\"it's\"); const m = require('kept');";
        assert_eq!(specifiers(src), ["kept"]);
    }
}
