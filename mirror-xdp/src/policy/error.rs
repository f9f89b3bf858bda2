//! A policy rejection that says where: file, line, column and what is wrong.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a policy was rejected. `line` and `column` are 1-based; 0 means "the whole file"
/// (it could not be read).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl PolicyError {
    pub fn new(file: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        PolicyError {
            file: file.to_path_buf(),
            line,
            column,
            message: one_line(message.into()),
        }
    }

    /// A file that could not be read at all.
    pub fn unreadable(file: &Path, err: &super::bounded::ReadError) -> Self {
        PolicyError::new(file, 0, 0, format!("cannot read: {err}"))
    }

    /// A file that is not UTF-8 text: at the first bad byte.
    pub fn not_utf8(file: &Path, err: &std::string::FromUtf8Error) -> Self {
        let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = String::from_utf8_lossy(&valid[line_start..])
            .chars()
            .count()
            + 1;
        PolicyError::new(file, line, column, "not UTF-8 text")
    }
}

/// `file:line:col: message`, or `file: message` when the error is about the whole file: a
/// file that could not be read has no position to show.
impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match self.line {
            0 => write!(f, "{file}: {}", self.message),
            line => write!(f, "{file}:{line}:{}: {}", self.column, self.message),
        }
    }
}

/// Control characters quoted from the input (a TOML "\n" escape in a string, a stray CR in
/// a set file) are shown escaped, so a message stays one readable line (found by fuzzing).
fn one_line(message: String) -> String {
    if !message.contains(char::is_control) {
        return message;
    }
    message
        .chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_control_characters_are_escaped() {
        let e = PolicyError::new(Path::new("p.toml"), 3, 11, "'10.0.\n0.1\t\r' is bad");
        assert_eq!(e.message, "'10.0.\\n0.1\\t\\r' is bad");
        assert_eq!(e.to_string(), "p.toml:3:11: '10.0.\\n0.1\\t\\r' is bad");
    }

    #[test]
    fn an_unreadable_file_is_shown_without_line_and_column() {
        // Line 0: the whole file, as for one that cannot be read.
        let e = PolicyError::new(
            Path::new("nonexist.toml"),
            0,
            0,
            "cannot read: no such file",
        );
        assert_eq!(e.to_string(), "nonexist.toml: cannot read: no such file");
    }
}
