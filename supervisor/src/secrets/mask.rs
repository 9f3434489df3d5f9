//! Masking of secret values in a run's output: every occurrence of a granted secret's
//! value in a console line, an error message or a stack becomes `***`, before the text
//! is stored in history or sent to a debug client. Done in the supervisor because the
//! worker runs the script and may be compromised by it.
//!
//! Values are replaced longest first, so a secret that contains another is masked
//! whole. Empty values mask nothing.

use std::sync::Arc;

/// What a masked value is replaced with.
pub const MASK: &str = "***";

/// The values to mask in one run's output. Cheap to clone.
#[derive(Clone, Default)]
pub struct Masker {
    /// Non-empty values, longest first, without duplicates.
    values: Arc<Vec<String>>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} values)", self.values.len())
    }
}

impl Masker {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Masker {
            values: Arc::new(values),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every value replaced by [`MASK`].
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for v in self.values.iter() {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }

    /// Masks `text` in place (no copy when there is nothing to mask).
    pub fn mask_in_place(&self, text: &mut String) {
        if self.values.iter().any(|v| text.contains(v.as_str())) {
            *text = self.mask(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence() {
        let m = Masker::new(["s3cr3t"]);
        assert_eq!(m.mask("a s3cr3t and s3cr3ts3cr3t"), "a *** and ******");
        assert_eq!(m.mask("nothing here"), "nothing here");
    }

    #[test]
    fn longest_first_for_overlapping_values() {
        let m = Masker::new(["abc", "abcdef", "", "abc"]);
        assert_eq!(m.mask("xabcdefx abc"), "x***x ***");
        let mut s = "key=abcdef".to_owned();
        m.mask_in_place(&mut s);
        assert_eq!(s, "key=***");
    }

    #[test]
    fn empty_masker_changes_nothing() {
        let m = Masker::default();
        assert!(m.is_empty());
        assert_eq!(m.mask("abc"), "abc");
    }
}
