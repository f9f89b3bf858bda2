//! The release artifacts of `cargo xtask package` (target/package), installed and run as an
//! admin would: the .deb in a clean Debian 12 root (install, run, purge without a trace) and
//! under lintian, the static binary in an empty chroot and attached in a namespace, and the
//! OCI image archive through skopeo and umoci. `cargo xtask test` packages first; run alone,
//! these tests fail until `cargo xtask package` has run.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mirror_xdp_tests::cli::{status, write_policy};
use mirror_xdp_tests::debian_root::DebianRoot;
use mirror_xdp_tests::repo;
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::TcpListenerSet;
use mirror_xdp_tests::sweep::assert_enforcing;
use mirror_xdp_tests::testbed::{SERVER_IF, Testbed};
use mirror_xdp_tests::tools::require_tool;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const OPEN: u16 = 8080;
const CLOSED: u16 = 8081;
const POLICY: &str = "version = 1\n\n[[ports]]\nproto = \"tcp\"\nports = [8080]\n";

/// An artifact of `cargo xtask package`.
fn artifact(name: &str) -> PathBuf {
    let path = repo::root().join("target/package").join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the artifacts first with `cargo xtask package`",
        path.display()
    );
    path
}

fn deb() -> PathBuf {
    artifact(&format!("mirror-xdp_{VERSION}_amd64.deb"))
}

/// Fails unless `out` shows success; returns stdout.
#[track_caller]
fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks `mirror-xdp --version`: the version, a commit and the object hash, which it returns.
#[track_caller]
fn object_hash(version: &str) -> String {
    let lines: Vec<&str> = version.lines().collect();
    let [name, commit, object] = lines[..] else {
        panic!("three lines expected: {version}");
    };
    assert_eq!(name, format!("mirror-xdp {VERSION}"));
    let commit = commit.strip_prefix("commit: ").expect("a commit line");
    assert!(
        commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "{commit}"
    );
    let hash = object
        .strip_prefix("eBPF object: sha256:")
        .expect("an object line");
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hash}"
    );
    hash.to_owned()
}

#[test]
fn the_deb_installs_runs_and_purges_without_a_trace_in_a_debian_12_root() {
    require_root();
    let deb = deb();
    let root = DebianRoot::fresh().expect("Debian 12 root");
    let before = root.paths();
    let name = deb.file_name().unwrap().to_str().unwrap();
    std::fs::copy(&deb, root.path().join("tmp").join(name)).expect("copying the .deb");

    println!("{}", root.sh_ok(&format!("apt-get install -y /tmp/{name}")));
    object_hash(&root.sh_ok("mirror-xdp --version"));
    let check = root.sh_ok("mirror-xdp check --policy /etc/mirror-xdp/policy.toml");
    println!("{check}");
    assert!(
        check.contains("monitor"),
        "the packaged policy starts in monitor mode: {check}"
    );
    assert_eq!(
        root.sh_ok("man -w mirror-xdp").trim(),
        "/usr/share/man/man1/mirror-xdp.1.gz"
    );
    assert_eq!(
        root.sh_ok("man -w 5 mirror-xdp.toml").trim(),
        "/usr/share/man/man5/mirror-xdp.toml.5.gz"
    );
    for completion in [
        "usr/share/bash-completion/completions/mirror-xdp",
        "usr/share/zsh/vendor-completions/_mirror-xdp",
        "usr/share/fish/vendor_completions.d/mirror-xdp.fish",
    ] {
        assert!(
            root.path().join(completion).is_file(),
            "{completion} missing"
        );
    }
    let files = root.sh_ok("dpkg -L mirror-xdp");
    let unit = files
        .lines()
        .find(|l| l.ends_with("/systemd/system/mirror-xdp.service"))
        .unwrap_or_else(|| panic!("no unit among the package's files:\n{files}"));
    root.sh_ok(&format!("systemd-analyze verify {unit}"));
    // Installed, not enabled: nothing starts the firewall before the admin has edited it.
    let enabled = root.sh("systemctl is-enabled mirror-xdp.service");
    assert_eq!(String::from_utf8_lossy(&enabled.stdout).trim(), "disabled");
    let conffiles = root.sh_ok("dpkg-query -W -f='${Conffiles}' mirror-xdp");
    for conffile in ["/etc/mirror-xdp/policy.toml", "/etc/default/mirror-xdp"] {
        assert!(
            conffiles.contains(conffile),
            "{conffile} is not a conffile: {conffiles}"
        );
    }
    let depends = root.sh_ok("dpkg-query -W -f='${Depends}' mirror-xdp");
    assert!(
        depends.contains("libc6"),
        "Depends computed from the binary: {depends}"
    );
    for shared in [
        "usr/share/mirror-xdp/fail2ban/action.d/mirror-xdp.conf",
        "usr/share/mirror-xdp/zabbix/mirror-xdp-template.yaml",
    ] {
        assert!(root.path().join(shared).is_file(), "{shared} missing");
    }

    // What the service leaves when it has run (live `source` entries): purge deletes it.
    root.sh_ok(
        "mkdir -m 0700 -p /var/lib/mirror-xdp && echo '{}' > /var/lib/mirror-xdp/live-sources.json",
    );
    println!("{}", root.sh_ok("apt-get purge -y mirror-xdp"));
    let after = root.paths();
    let left: Vec<&String> = after
        .difference(&before)
        .filter(|p| !bookkeeping(p))
        .collect();
    assert!(left.is_empty(), "left behind by the purge: {left:?}");
    assert!(!root.path().join("usr/sbin/mirror-xdp").exists());
}

/// dpkg's and apt's own records, caches and logs, which an install changes for good.
fn bookkeeping(path: &str) -> bool {
    ["var/lib/dpkg", "var/lib/apt", "var/cache/", "var/log/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

#[test]
fn lintian_finds_no_error_and_no_warning_in_the_deb() {
    require_tool("lintian", "lintian");
    let deb = deb();
    let out = Command::new("timeout")
        .args([
            "600",
            "lintian",
            "--fail-on",
            "error,warning",
            "--display-info",
        ])
        .arg(&deb)
        .output()
        .expect("running lintian");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    ok("lintian", out);
}

/// A mount undone when the test ends, however it ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn the_static_binary_runs_in_an_empty_chroot_and_attaches_in_a_namespace() {
    require_root();
    let tarball = artifact(&format!("mirror-xdp-{VERSION}-x86_64-linux-musl.tar.gz"));
    let unpacked = tempfile::tempdir().unwrap();
    ok(
        "tar",
        Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(unpacked.path())
            .output()
            .unwrap(),
    );
    let top = unpacked
        .path()
        .join(format!("mirror-xdp-{VERSION}-x86_64-linux-musl"));
    for doc in [
        "README.md",
        "man/mirror-xdp.1",
        "deploy/systemd/mirror-xdp.service",
    ] {
        assert!(top.join(doc).is_file(), "{doc} missing from the tarball");
    }
    let binary = top.join("mirror-xdp");

    // Nothing but the binary, the policy and /proc: no loader, no C library.
    let jail = tempfile::tempdir().unwrap();
    std::fs::copy(&binary, jail.path().join("mirror-xdp")).unwrap();
    std::fs::write(jail.path().join("policy.toml"), POLICY).unwrap();
    std::fs::create_dir(jail.path().join("proc")).unwrap();
    ok(
        "mount proc",
        Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(jail.path().join("proc"))
            .output()
            .unwrap(),
    );
    let _proc = Mounted(jail.path().join("proc"));
    // In a network namespace of its own: `check` judges the host's sessions (lock-out check),
    // and an empty namespace has none, whatever the machine runs.
    let in_jail = |args: &[&str]| {
        Command::new("unshare")
            .args(["--net", "chroot"])
            .arg(jail.path())
            .arg("/mirror-xdp")
            .args(args)
            .output()
            .unwrap()
    };
    let hash = object_hash(&ok(
        "--version in the empty chroot",
        in_jail(&["--version"]),
    ));
    ok(
        "check in the empty chroot",
        in_jail(&["check", "--policy", "/policy.toml"]),
    );

    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[OPEN, CLOSED]).expect("tcp listeners");
    let path = write_policy(&bed, "policy.toml", POLICY);
    let attached = bed.cli(
        &binary,
        &[
            "attach",
            "--iface",
            SERVER_IF,
            "--policy",
            path.to_str().unwrap(),
        ],
    );
    ok("attach with the static binary", attached);
    assert_enforcing(&bed, OPEN, CLOSED, "attached by the static binary");
    // status (of the test build) names the object of the build that attached.
    assert_eq!(status(&bed)["ebpf_object"], format!("sha256:{hash}"));
    ok("detach", bed.cli(&binary, &["detach"]));
}

#[test]
fn the_oci_archive_inspects_copies_and_unpacks_to_a_binary_that_checks_a_policy() {
    require_root();
    require_tool("skopeo", "skopeo");
    require_tool("umoci", "umoci");
    let archive = artifact(&format!("mirror-xdp-{VERSION}-oci.tar"));
    let source = format!("oci-archive:{}", archive.display());
    let inspect = ok(
        "skopeo inspect",
        Command::new("skopeo")
            .args(["inspect", &source])
            .output()
            .unwrap(),
    );
    let doc: serde_json::Value = serde_json::from_str(&inspect).expect("skopeo's JSON");
    assert_eq!(doc["Architecture"], "amd64", "{doc}");
    assert_eq!(doc["Os"], "linux", "{doc}");
    assert_eq!(
        doc["Labels"]["org.opencontainers.image.version"], VERSION,
        "{doc}"
    );
    assert_eq!(doc["Layers"].as_array().map(Vec::len), Some(1), "{doc}");

    // A copy checks every blob against its digest.
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let target = format!("oci:{}:mx", layout.display());
    ok(
        "skopeo copy",
        Command::new("skopeo")
            .args(["copy", &source, &target])
            .output()
            .unwrap(),
    );
    let bundle = work.path().join("bundle");
    ok(
        "umoci unpack",
        Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:mx", layout.display())])
            .arg(&bundle)
            .output()
            .unwrap(),
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        files(&rootfs),
        ["usr/local/sbin/mirror-xdp"],
        "the image holds the binary only"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        config["process"]["args"],
        serde_json::json!(["/usr/local/sbin/mirror-xdp", "run"])
    );
    let binary = rootfs.join("usr/local/sbin/mirror-xdp");
    let policy = repo::root().join("examples/mirror.toml");
    ok(
        "check with the image's binary",
        Command::new(&binary)
            .arg("check")
            .arg("--policy")
            .arg(&policy)
            .output()
            .unwrap(),
    );
}

/// The regular files under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                found.push(
                    entry
                        .path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    found.sort();
    found
}
