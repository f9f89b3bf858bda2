//! A policy rejection that says where: file, line, column and what is wrong.

use std::path::{Path, PathBuf};

/// Why a policy was rejected. `line` and `column` are 1-based; 0 means "the whole file"
/// (it could not be read).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
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
            message: message.into(),
        }
    }

    /// A file that could not be read at all.
    pub fn io(file: &Path, err: &std::io::Error) -> Self {
        PolicyError::new(file, 0, 0, format!("cannot read: {err}"))
    }
}
