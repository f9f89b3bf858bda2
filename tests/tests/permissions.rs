//! Who may touch the enforcer: its pins and state files are root's alone (0700 folders,
//! 0600 files), a non-root user gets a clear refusal from every command that needs root and
//! cannot open a pinned map through bpffs, and metrics listen on loopback by default.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use mirror_xdp::daemon::DEFAULT_METRICS;
use mirror_xdp_common::map_name;
use mirror_xdp_tests::cli::{attach_policy, cli_bin, run_ok, status, write_policy};
use mirror_xdp_tests::repo::read;
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::testbed::*;

const POLICY: &str = r#"
version = 1

[[ports]]
proto = "tcp"
ports = [443]
"#;

/// `command` as user nobody (group nogroup, no supplementary groups) in the server
/// namespace.
fn as_nobody(bed: &Testbed, command: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = bed.server.nsenter_command("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(command)
        .envs(bed.cli_env());
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}, stdout {:?}, stderr {:?}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every file and folder under `dir` (itself included) with its mode and owner.
fn tree(dir: &Path) -> Vec<(PathBuf, u32, u32, bool)> {
    let meta = std::fs::metadata(dir).expect("metadata");
    let mut all = vec![(dir.to_path_buf(), meta.mode() & 0o7777, meta.uid(), true)];
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        match meta.is_dir() {
            true => all.extend(tree(&path)),
            false => all.push((path, meta.mode() & 0o7777, meta.uid(), false)),
        }
    }
    all
}

#[track_caller]
fn assert_root_only(dir: &Path) {
    let entries = tree(dir);
    for (path, mode, uid, is_dir) in &entries {
        let expected = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(
            (*mode, *uid),
            (expected, 0),
            "{} is mode {mode:o} owned by {uid}",
            path.display()
        );
    }
    assert!(entries.len() > 3, "{entries:?}");
}

/// Pins and state written by attach, live changes and a reload, in folders the CLI
/// creates itself (the testbed's own folders hold them, so they vanish with it).
#[test]
fn pins_and_state_files_are_root_only() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let pins = bed.bpffs_dir().join("enforcer");
    let state = bed.state_dir().join("state");
    let policy = write_policy(&bed, "policy.toml", POLICY);
    let cli = |args: &[&str]| {
        let out = bed
            .cli_command(&cli_bin())
            .env("MIRROR_XDP_BPFFS", &pins)
            .env("MIRROR_XDP_STATE_DIR", &state)
            .args(args)
            .output()
            .expect("run mirror-xdp");
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    let policy = policy.to_str().expect("UTF-8 path");
    cli(&["attach", "--iface", SERVER_IF, "--policy", policy]);
    cli(&["source", "deny", "192.0.2.7", "--ttl", "1h"]);
    cli(&["port", "allow", "8080/tcp"]);
    cli(&["reload"]);
    assert!(pins.join("gen-2").is_dir(), "no second generation");
    assert!(state.join("live-sources.json").is_file());
    assert_root_only(&pins);
    assert_root_only(&state);
    cli(&["detach"]);
}

/// Every command that needs root, with valid arguments: refused with exit 1 and a message
/// that says so; the enforcer and its state are untouched.
#[test]
fn non_root_user_is_refused_clearly() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let policy = attach_policy(&bed, POLICY);
    let policy = policy.to_str().expect("UTF-8 path");
    let before = status(&bed);
    let state_file = bed.state_dir().join("state.json");
    let record = std::fs::read(&state_file).expect("state file");
    let commands: [&[&str]; 16] = [
        &["attach", "--iface", SERVER_IF, "--policy", policy],
        &["run", "--iface", SERVER_IF, "--policy", policy],
        &["reload"],
        &["detach"],
        &["detach", "--iface", SERVER_IF],
        &["status"],
        &["stats", "--json"],
        &["stats", "--reset"],
        &["port", "allow", "8080/tcp"],
        &["port", "remove", "8080/tcp"],
        &["port", "list"],
        &["source", "deny", "192.0.2.7"],
        &["source", "allow", "192.0.2.8"],
        &["source", "remove", "192.0.2.7"],
        &["source", "list", "--json"],
        &["audit"],
    ];
    for args in commands {
        let out = as_nobody(&bed, cli_bin())
            .args(args)
            .output()
            .expect("setpriv");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(stderr.contains("needs root"), "{args:?}: {}", text(&out));
    }
    assert_eq!(status(&bed), before);
    assert_eq!(std::fs::read(&state_file).expect("state file"), record);
    run_ok(&bed, &["detach"]);
}

/// bpftool as nobody: BPF_OBJ_GET on a pinned map or link fails with EACCES, for reading
/// (dump) and for writing (update). First as attach left them (a generation's folder is
/// 0700), then with every folder opened for traversal, so the pins' own 0600 mode is what
/// refuses.
#[test]
fn non_root_user_cannot_open_pinned_maps() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    attach_policy(&bed, POLICY);
    let pins = bed.bpffs_dir();
    let generation = pins.join("gen-1");
    let targets = [
        pins.join(map_name::STATS),
        pins.join(map_name::LIMITS),
        generation.join(map_name::CONFIG),
        generation.join(map_name::PORTS),
    ];
    let try_all = |what: &str| {
        for pin in &targets {
            let pin = pin.to_str().expect("UTF-8 path");
            let attempts: [&[&str]; 2] = [
                &["map", "dump", "pinned", pin],
                &[
                    "map", "update", "pinned", pin, "key", "0", "0", "0", "0", "value", "0",
                ],
            ];
            for args in attempts {
                let out = as_nobody(&bed, "bpftool")
                    .args(args)
                    .output()
                    .expect("setpriv bpftool");
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(!out.status.success(), "{what}: {args:?}: {}", text(&out));
                assert!(
                    stderr.contains("Permission denied"),
                    "{what}: {args:?} did not fail with EACCES: {}",
                    text(&out)
                );
            }
        }
        let link = pins.join(format!("link_xdp_{SERVER_IF}"));
        let out = as_nobody(&bed, "bpftool")
            .args(["link", "show", "pinned", link.to_str().expect("UTF-8")])
            .output()
            .expect("setpriv bpftool");
        assert!(!out.status.success(), "{what}: link: {}", text(&out));
    };
    try_all("as attached");
    let chmod = |dir: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    // The testbed's own pin folder and the generation folder: opened for traversal only.
    chmod(pins, 0o711);
    chmod(&generation, 0o711);
    try_all("with the folders traversable");
    chmod(&generation, 0o700);
    let stats = pins.join(map_name::STATS);
    let out = Command::new("bpftool")
        .args(["map", "show", "pinned", stats.to_str().expect("UTF-8")])
        .output()
        .expect("bpftool");
    assert!(
        out.status.success(),
        "root must still open it: {}",
        text(&out)
    );
}

/// The documented default (README, the systemd unit).
const DOCUMENTED_METRICS: &str = "127.0.0.1:9472";

/// The default that `run --help` shows, and the library's constant, are the documented one,
/// and the documents do say it.
#[test]
fn metrics_default_to_the_documented_loopback_address() {
    let addr: SocketAddr = DOCUMENTED_METRICS.parse().expect("a socket address");
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_eq!(DEFAULT_METRICS, DOCUMENTED_METRICS);
    let help = Command::new(cli_bin())
        .args(["run", "--help"])
        .output()
        .expect("mirror-xdp run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains(&format!("[default: {DOCUMENTED_METRICS}]")),
        "run --help: {help}"
    );
    assert!(
        read("README.md").contains(&format!("`--metrics ADDR` (default `{DOCUMENTED_METRICS}`")),
        "README.md documents another default"
    );
    assert!(
        read("deploy/systemd/mirror-xdp.service").contains(&format!(
            "Environment=MIRROR_XDP_METRICS={DOCUMENTED_METRICS}\n"
        )),
        "the systemd unit sets another address"
    );
}

/// `run` without --metrics listens on 127.0.0.1:9472 and nowhere else, and serves there.
#[test]
fn daemon_metrics_listen_on_loopback_unless_told_otherwise() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let policy = write_policy(&bed, "policy.toml", POLICY);
    let args = [
        "run",
        "--iface",
        SERVER_IF,
        "--policy",
        policy.to_str().expect("UTF-8"),
    ];
    let (mut daemon, log) = bed.spawn_cli(&cli_bin(), &args).expect("start run");
    let listeners = || {
        let out = bed
            .server
            .run_ok("ss", &["-Hltn", "sport", "= :9472"])
            .expect("ss");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
            .collect::<Vec<String>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while listeners().is_empty() && Instant::now() < deadline {
        daemon.ensure_running().expect("daemon running");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(listeners(), ["127.0.0.1:9472"], "log: {}", log_text());
    let body = bed.server.enter(|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect(DEFAULT_METRICS)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut body = String::new();
        stream.read_to_string(&mut body)?;
        Ok(body)
    });
    let body = body.expect("scrape 127.0.0.1:9472");
    assert!(body.contains("mirror_xdp_packets_total"), "{body}");
    daemon.stop().expect("stop the daemon");
    run_ok(&bed, &["detach"]);
}
