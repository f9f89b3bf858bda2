//! External programs the tests run: a missing one fails the test and says what to install,
//! it never turns the test into a pass.

use std::process::Command;

/// Fails unless `program --version` runs; `package` is the Debian package that has it.
#[track_caller]
pub fn require_tool(program: &str, package: &str) {
    let found = Command::new(program).arg("--version").output().is_ok();
    assert!(
        found,
        "needs `{program}` (Debian package {package}): run `cargo xtask setup`"
    );
}
