//! `limits.syn_cookies` hands the client's ACK to the kernel, which accepts a cookie only with
//! `net.ipv4.tcp_syncookies = 2` (it then checks cookies whenever it has recently sent one
//! itself, which the keepalive SYNs see to). The setting is per network namespace and covers
//! IPv6 too; `attach` sets it and records the old value, `detach` puts that back.

use std::path::{Path, PathBuf};

/// The sysctl in the namespace of the calling process.
pub const SYSCTL: &str = "/proc/sys/net/ipv4/tcp_syncookies";
/// "Always send cookies": the only value with which the kernel checks them without its own
/// listen queue overflowing.
pub const REQUIRED: &str = "2";

#[derive(Debug, thiserror::Error)]
#[error("syn_cookies needs net.ipv4.tcp_syncookies = 2: {action} {path}: {source}")]
pub struct SyncookiesError {
    action: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

/// Sets the sysctl at `path` to [`REQUIRED`]; returns the value it had.
pub fn enable(path: &Path) -> Result<String, SyncookiesError> {
    let before = read(path)?;
    if before != REQUIRED {
        write(path, REQUIRED)?;
    }
    Ok(before)
}

/// Writes back the value [`enable`] found.
pub fn restore(path: &Path, value: &str) -> Result<(), SyncookiesError> {
    if read(path)? != value {
        write(path, value)?;
    }
    Ok(())
}

/// The sysctl's value at `path`.
pub fn read(path: &Path) -> Result<String, SyncookiesError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_string())
        .map_err(|source| SyncookiesError {
            action: "reading",
            path: path.to_path_buf(),
            source,
        })
}

fn write(path: &Path, value: &str) -> Result<(), SyncookiesError> {
    std::fs::write(path, format!("{value}\n")).map_err(|source| SyncookiesError {
        action: "writing",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enable_sets_2_and_restore_puts_the_old_value_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tcp_syncookies");
        std::fs::write(&path, "1\n").unwrap();
        assert_eq!(enable(&path).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "2\n");
        // Already 2: left alone, and 2 is what comes back.
        assert_eq!(enable(&path).unwrap(), "2");
        restore(&path, "1").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
    }

    #[test]
    fn errors_name_the_setting_and_the_file() {
        let err = enable(Path::new("/nonexistent/tcp_syncookies")).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "syn_cookies needs net.ipv4.tcp_syncookies = 2: reading \
                 /nonexistent/tcp_syncookies: "
            ),
            "{err}"
        );
    }
}
