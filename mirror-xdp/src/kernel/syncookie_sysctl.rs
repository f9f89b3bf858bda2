//! `limits.syn_cookies` hands the client's ACK to the kernel, which accepts a cookie only with
//! `net.ipv4.tcp_syncookies = 2` (it then checks cookies whenever it has recently sent one
//! itself, which the keepalive SYNs see to). The setting is per network namespace and covers
//! IPv6 too; `attach` sets it and records the old value, `detach` puts that back.
//!
//! A cookie SYN-ACK carries the client's window scale, SACK and ECN in its timestamp, as the
//! kernel's own cookies do. The kernel takes its per-connection timestamp offset off the
//! echo before it reads them, an offset the XDP program cannot know: `attach` turns the
//! offsets off (`net.ipv4.tcp_timestamps` 1 to 2) and `detach` turns them back on. What the
//! cookies may carry follows the other TCP sysctls ([`cookie_options`]).

use std::path::{Path, PathBuf};

use mirror_xdp_common::{cookie_option, timestamp_cookie::MAX_WSCALE};

/// The sysctl in the namespace of the calling process.
pub const SYSCTL: &str = "/proc/sys/net/ipv4/tcp_syncookies";
/// Where the calling process's network namespace shows its sysctls.
pub const PROC_SYS: &str = "/proc/sys";
const TIMESTAMPS: &str = "net/ipv4/tcp_timestamps";
/// Timestamps on, without per-connection offsets.
const TIMESTAMPS_WITHOUT_OFFSETS: &str = "2";
/// "Always send cookies": the only value with which the kernel checks them without its own
/// listen queue overflowing.
pub const REQUIRED: &str = "2";

/// A sysctl that `syn_cookies` sets or reads could not be.
#[derive(Debug, thiserror::Error)]
#[error("syn_cookies: {action} {path}: {source}")]
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

/// Turns timestamp offsets off under `proc_sys` (`tcp_timestamps` 1 to 2); returns the old
/// value if it changed it. Timestamps that are off (0) stay off: cookies then carry the
/// MSS alone.
pub fn timestamps_without_offsets(proc_sys: &Path) -> Result<Option<String>, SyncookiesError> {
    let path = proc_sys.join(TIMESTAMPS);
    let before = read(&path)?;
    if before != "1" {
        return Ok(None);
    }
    write(&path, TIMESTAMPS_WITHOUT_OFFSETS)?;
    Ok(Some(before))
}

/// Puts back the `tcp_timestamps` value [`timestamps_without_offsets`] found.
pub fn restore_timestamps(proc_sys: &Path, value: &str) -> Result<(), SyncookiesError> {
    restore(&proc_sys.join(TIMESTAMPS), value)
}

/// What a cookie SYN-ACK may carry on this host (`cookie_option::*`) and the window scale
/// the kernel gives a connection it makes from a cookie, from the sysctls under `proc_sys`;
/// `timestamps` is `tcp_timestamps` as it will be when the cookies go out.
///
/// The scale is the kernel's `tcp_select_initial_window` for a listener that does not fix
/// its receive buffer: the largest receive space (`tcp_rmem`'s maximum or `rmem_max`) in
/// units of 64 KiB, as a power of two, at most 14.
pub fn cookie_options(proc_sys: &Path, timestamps: &str) -> Result<(u8, u8), SyncookiesError> {
    let on =
        |name: &str| -> Result<bool, SyncookiesError> { Ok(read(&proc_sys.join(name))? != "0") };
    let mut options = 0;
    if timestamps == TIMESTAMPS_WITHOUT_OFFSETS {
        options |= cookie_option::TIMESTAMPS;
    }
    for (name, option) in [
        ("net/ipv4/tcp_window_scaling", cookie_option::WINDOW_SCALE),
        ("net/ipv4/tcp_sack", cookie_option::SACK),
        ("net/ipv4/tcp_ecn", cookie_option::ECN),
    ] {
        if on(name)? {
            options |= option;
        }
    }
    let tcp_rmem = proc_sys.join("net/ipv4/tcp_rmem");
    let rmem_max = proc_sys.join("net/core/rmem_max");
    // `rmem_max` is global, and some kernels (6.1) show it in the host's namespace only.
    let rmem_max = match std::fs::exists(&rmem_max) {
        Ok(false) => 0,
        _ => number(&rmem_max, Some(&read(&rmem_max)?))?,
    };
    let largest = number(&tcp_rmem, read(&tcp_rmem)?.split_whitespace().nth(2))?.max(rmem_max);
    let wscale = largest
        .max(1)
        .ilog2()
        .saturating_sub(15)
        .min(u32::from(MAX_WSCALE));
    Ok((options, wscale as u8))
}

/// The timestamps sysctl under `proc_sys`.
pub fn timestamps(proc_sys: &Path) -> Result<String, SyncookiesError> {
    read(&proc_sys.join(TIMESTAMPS))
}

fn number(path: &Path, text: Option<&str>) -> Result<u64, SyncookiesError> {
    text.and_then(|t| t.parse().ok())
        .ok_or_else(|| SyncookiesError {
            action: "reading a number from",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a number"),
        })
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

    /// A `/proc/sys` of files: (name under it, value).
    fn proc_sys(values: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in values {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, format!("{value}\n")).unwrap();
        }
        dir
    }

    const DEBIAN: [(&str, &str); 6] = [
        ("net/ipv4/tcp_timestamps", "1"),
        ("net/ipv4/tcp_window_scaling", "1"),
        ("net/ipv4/tcp_sack", "1"),
        ("net/ipv4/tcp_ecn", "2"),
        ("net/ipv4/tcp_rmem", "4096\t131072\t6291456"),
        ("net/core/rmem_max", "212992"),
    ];

    #[test]
    fn timestamp_offsets_go_off_and_come_back() {
        let dir = proc_sys(&DEBIAN);
        let path = dir.path().join(TIMESTAMPS);
        assert_eq!(
            timestamps_without_offsets(dir.path()).unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "2\n");
        // Already without offsets, or off: left alone, nothing to restore.
        assert_eq!(timestamps_without_offsets(dir.path()).unwrap(), None);
        std::fs::write(&path, "0\n").unwrap();
        assert_eq!(timestamps_without_offsets(dir.path()).unwrap(), None);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n");
        restore_timestamps(dir.path(), "1").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
    }

    #[test]
    fn cookie_options_follow_the_sysctls() {
        let all = cookie_option::TIMESTAMPS
            | cookie_option::WINDOW_SCALE
            | cookie_option::SACK
            | cookie_option::ECN;
        // Debian's defaults: 6 MiB is 2^22 bytes, 2^7 units of 64 KiB.
        let dir = proc_sys(&DEBIAN);
        assert_eq!(cookie_options(dir.path(), "2").unwrap(), (all, 7));
        assert_eq!(
            cookie_options(dir.path(), "0").unwrap(),
            (all & !cookie_option::TIMESTAMPS, 7)
        );
        // Offsets still on: the echo cannot be read, no timestamp cookies.
        assert_eq!(
            cookie_options(dir.path(), "1").unwrap().0 & cookie_option::TIMESTAMPS,
            0
        );
        let mut values = DEBIAN;
        values[2].1 = "0";
        values[3].1 = "0";
        values[5].1 = "16777216"; // rmem_max 16 MiB: 2^24, scale 9
        let dir = proc_sys(&values);
        assert_eq!(
            cookie_options(dir.path(), "2").unwrap(),
            (cookie_option::TIMESTAMPS | cookie_option::WINDOW_SCALE, 9)
        );
        // Past 2^29 bytes the scale stays at 14; a tiny buffer scales by 0.
        values[5].1 = "4294967295";
        assert_eq!(cookie_options(proc_sys(&values).path(), "2").unwrap().1, 14);
        values[4].1 = "4096 16384 32768";
        values[5].1 = "32768";
        assert_eq!(cookie_options(proc_sys(&values).path(), "2").unwrap().1, 0);
        // A namespace that does not show the global rmem_max: tcp_rmem alone.
        let dir = proc_sys(&values);
        std::fs::remove_file(dir.path().join("net/core/rmem_max")).unwrap();
        assert_eq!(cookie_options(dir.path(), "2").unwrap().1, 0);
        values[4].1 = "4096 16384";
        let err = cookie_options(proc_sys(&values).path(), "2").unwrap_err();
        assert!(err.to_string().contains("tcp_rmem"), "{err}");
    }

    #[test]
    fn errors_name_the_setting_and_the_file() {
        let err = enable(Path::new("/nonexistent/tcp_syncookies")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("syn_cookies: reading /nonexistent/tcp_syncookies: "),
            "{err}"
        );
    }
}
