//! Files that are not what they claim: `/dev/zero`, `/dev/urandom`, a FIFO, a directory, a
//! sparse file over the size bound and a single line of 100 MB, given as the policy, as a
//! set file and as `source deny --file`. Each is refused at once (exit 2, naming the file
//! and the reason) in bounded memory, instead of reading forever or hanging.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mirror_xdp_tests::cli::{Run, run, write_policy};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::testbed::{SERVER_IF, Testbed};
use mirror_xdp_tests::wait::stretched;

/// The size bound the README states (256 MiB).
const MAX_FILE_BYTES: u64 = 256 << 20;

/// Each hostile file and what the refusal must say about it.
fn hostile_files(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let fifo = dir.join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.expect("mkfifo").success(), "mkfifo {}", fifo.display());
    let sparse = dir.join("sparse.txt");
    std::fs::File::create(&sparse)
        .and_then(|f| f.set_len(MAX_FILE_BYTES + 1))
        .expect("sparse file");
    let long_line = dir.join("long-line.txt");
    std::fs::write(&long_line, vec![b'1'; 100 << 20]).expect("100 MB line");
    let folder = dir.join("a-folder");
    std::fs::create_dir(&folder).expect("folder");
    vec![
        (
            "/dev/zero".into(),
            "not a regular file but a character device",
        ),
        (
            "/dev/urandom".into(),
            "not a regular file but a character device",
        ),
        (fifo, "not a regular file but a FIFO"),
        (folder, "not a regular file but a directory"),
        (sparse, "larger than 256 MiB"),
        (long_line, "line 1 is longer than 1 MiB"),
    ]
}

/// Runs the command and checks it is refused with exit 2, the file and the reason, at once.
fn assert_refused(bed: &Testbed, args: &[&str], file: &Path, reason: &str) {
    let started = Instant::now();
    let r: Run = run(bed, args);
    let took = started.elapsed();
    let what = format!("mirror-xdp {args:?} ({})", file.display());
    assert_eq!(r.code, Some(2), "{what}: {r:?}");
    assert!(
        r.stderr.contains(&file.display().to_string()),
        "{what}: {r:?}"
    );
    assert!(r.stderr.contains(reason), "{what}: {r:?}");
    assert!(
        took < stretched(Duration::from_secs(3)),
        "{what} took {took:?}"
    );
}

#[test]
fn hostile_policy_set_and_list_files_are_refused_at_once() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let dir = tempfile::tempdir().expect("temp dir");
    for (file, reason) in hostile_files(dir.path()) {
        let name = file.to_str().expect("UTF-8 path");
        assert_refused(&bed, &["check", "--policy", name], &file, reason);

        let text = format!(
            "version = 1\n[[ports]]\nproto = \"tcp\"\nports = [22]\nfrom = [{{ file = \"{name}\" }}]\n"
        );
        let policy = write_policy(&bed, "policy.toml", &text);
        let policy = policy.to_str().expect("UTF-8 path");
        assert_refused(&bed, &["check", "--policy", policy], &file, reason);
        // attach reads the policy the same way, and attaches nothing.
        assert_refused(
            &bed,
            &["attach", "--iface", SERVER_IF, "--policy", policy],
            &file,
            reason,
        );

        assert_refused(&bed, &["source", "deny", "--file", name], &file, reason);
    }
}
