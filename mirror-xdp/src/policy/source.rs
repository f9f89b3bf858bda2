//! One file's text and path: maps byte offsets to 1-based line:column and builds errors there.

mod suggest;

use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::PolicyError;

/// A file being read: the policy itself or a set file.
pub(super) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl<'a> Source<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Source { path, text }
    }

    /// 1-based line and column (in characters) of a byte offset; past the end means the end.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// An error at the start of a byte span.
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> PolicyError {
        let (line, column) = self.line_col(span.start);
        PolicyError::new(self.path, line, column, message)
    }

    /// An error at a value read with its position.
    pub fn error<T>(&self, value: &Spanned<T>, message: impl Into<String>) -> PolicyError {
        self.error_at(value.span(), message)
    }

    /// The line (1-based) where a value starts.
    pub fn line_of<T>(&self, value: &Spanned<T>) -> usize {
        self.line_col(value.span().start).0
    }

    /// A TOML syntax or shape error, at the position the parser reported, on one line and in
    /// TOML's words ("array", not serde's "sequence"); a misspelled key gets the closest one.
    pub fn toml_error(&self, err: &toml::de::Error) -> PolicyError {
        let span = err.span().unwrap_or(0..0);
        let lines: Vec<&str> = err.message().lines().map(str::trim).collect();
        let mut message = lines.join("; ").replace("a sequence", "an array");
        // toml has no words for a key whose value is cut off by the end of the file.
        if message.is_empty() {
            message = if span.start >= self.text.len() {
                "unexpected end of file: a value is missing".to_string()
            } else {
                "invalid TOML".to_string()
            };
        }
        if let Some(hint) = suggest::unknown_key_hint(&message) {
            message = format!("{message}; {hint}");
        }
        self.error_at(span, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let src = Source::new(Path::new("p.toml"), "ab\ncäd\n\nx");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(1), (1, 2));
        assert_eq!(src.line_col(2), (1, 3));
        assert_eq!(src.line_col(3), (2, 1));
        // 'ä' is two bytes but one column.
        assert_eq!(src.line_col(6), (2, 3));
        assert_eq!(src.line_col(8), (3, 1));
        assert_eq!(src.line_col(9), (4, 1));
        assert_eq!(src.line_col(100), (4, 2));
    }

    #[test]
    fn offset_inside_a_character_counts_as_that_character() {
        let src = Source::new(Path::new("p.toml"), "äb");
        assert_eq!(src.line_col(1), (1, 1));
    }

    #[test]
    fn a_value_cut_off_by_the_end_of_the_file_is_named() {
        // Found by fuzzing: toml reports this with an empty message.
        for text in ["icmp =", "version = 1\nmode = "] {
            let src = Source::new(Path::new("p.toml"), text);
            let err = toml::from_str::<toml::Table>(text).unwrap_err();
            let e = src.toml_error(&err);
            assert_eq!(e.message, "unexpected end of file: a value is missing");
            assert_eq!((e.line, e.column), src.line_col(text.len()));
        }
    }

    #[test]
    fn errors_carry_the_file_and_position() {
        let src = Source::new(Path::new("/etc/p.toml"), "a\nbc");
        let err = src.error_at(3..4, "bad");
        assert_eq!(err.to_string(), "/etc/p.toml:2:2: bad");
    }
}
