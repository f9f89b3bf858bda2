//! Files of the repository itself (deploy kit, docs, examples), for the tests that check
//! them against the code.

use std::path::{Path, PathBuf};

/// The workspace root: the folder above this crate.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the workspace root")
        .to_path_buf()
}

/// The text of `rel` (a path from the workspace root).
pub fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
