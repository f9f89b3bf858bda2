//! The library's groups depend in one direction, as `lib.rs` and the README's layout say:
//! each imports only from the groups listed before it. Read from the source, so a `use`
//! that points upward fails here rather than growing into a cycle. Doc comments and
//! test-only code (`#[cfg(test)]` modules and files) may name any group.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the mirror-xdp package and uses a few"
)]

use std::path::{Path, PathBuf};

/// Bottom to top, as in `lib.rs`.
const GROUPS: [&str; 10] = [
    "policy",
    "compile",
    "model",
    "state",
    "kernel",
    "live",
    "lifecycle",
    "control",
    "observe",
    "daemon",
];

#[test]
fn groups_import_only_from_the_groups_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut upward = Vec::new();
    for (rank, group) in GROUPS.iter().enumerate() {
        for file in rust_files(&src.join(group)) {
            if test_only(&file) {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in non_test_code(&text).lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for above in &GROUPS[rank + 1..] {
                    if line.contains(&format!("crate::{above}")) || in_use_list(&text, n, above) {
                        upward.push(format!("{}:{}: {group} -> {above}", file.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a group above:\n{}",
        upward.join("\n")
    );
}

/// `above` named at the head of a line inside a `use crate::{ ... };` list.
fn in_use_list(text: &str, line: usize, above: &str) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    let this = lines[line].trim_start();
    if !(this.starts_with(&format!("{above}::")) || this.starts_with(&format!("{above},"))) {
        return false;
    }
    // The nearest `use` above this line opens the list it belongs to.
    lines[..line]
        .iter()
        .rev()
        .find(|l| l.trim_start().starts_with("use ") || l.trim_start().starts_with("pub use "))
        .is_some_and(|l| l.contains("use crate::{"))
}

/// The text before an inline `#[cfg(test)] mod tests`.
fn non_test_code(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests {")
        .map_or(text, |end| &text[..end])
}

/// A file that its parent declares `#[cfg(test)]`, or one in a `tests` folder.
fn test_only(file: &Path) -> bool {
    if file.components().any(|c| c.as_os_str() == "tests") || file.ends_with("tests.rs") {
        return true;
    }
    let name = file.file_stem().unwrap().to_str().unwrap();
    let parent = file.parent().unwrap().join("mod.rs");
    std::fs::read_to_string(parent)
        .is_ok_and(|text| text.contains(&format!("#[cfg(test)]\nmod {name};")))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
