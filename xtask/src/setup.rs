//! `cargo xtask setup`: installs only what is missing, so a second run is fast and quiet.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::{is_root, run_step};

/// Debian packages: the LLVM 22 development files build bpf-linker; the rest are tools that
/// the integration tests, the demo and the benchmarks run (servers, probes, traffic,
/// inspection, nftables and iptables to compare with, and ufw and ipset, whose rule sets
/// `import` reads), and what `cargo xtask vm-test`
/// boots other kernels with (qemu, a static busybox for the initramfs, xz for 6.12's
/// modules; apt and dpkg fetch and unpack the kernels), and what `cargo xtask package` and
/// its tests use (dpkg-shlibdeps for the .deb's Depends, lintian, a Debian 12 root made by
/// debootstrap, skopeo and umoci for the OCI image; musl-gcc for the C inside the static
/// build's TLS crate, ring), and keepalived, whose VRRP the `[[protocols]]` test elects with.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "iproute2",
    "ethtool",
    "nmap",
    "hping3",
    "nginx-light",
    "rsync",
    "curl",
    "bpftool",
    "tcpdump",
    "xdp-tools",
    "socat",
    "procps",
    "nftables",
    "iptables",
    "ipset",
    "ufw",
    "qemu-system-x86",
    "busybox-static",
    "xz-utils",
    "kmod",
    "dpkg-dev",
    "lintian",
    "debootstrap",
    "skopeo",
    "umoci",
    "musl-tools",
    "keepalived",
];

/// The static build of `cargo xtask package`.
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
const CARGO_DEB_VERSION: &str = "3.8.0";

const BPF_LINKER_VERSION: &str = "0.13.0";
const BPFFS: &str = "/sys/fs/bpf";

pub fn run() -> Result<()> {
    let mut installed = false;
    installed |= apt_packages()?;
    installed |= nightly()?;
    installed |= bpf_linker()?;
    installed |= musl_target()?;
    installed |= cargo_deb()?;
    installed |= bpffs()?;
    installed |= crowdsec()?;
    if !installed {
        println!("setup: everything present");
    }
    Ok(())
}

/// apt and mount need root; say so plainly instead of letting them fail obscurely.
fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!("setup: {what} needs root; run `cargo xtask setup` as root");
    }
    Ok(())
}

fn apt_packages() -> Result<bool> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    println!("setup: installing apt packages: {}", missing.join(" "));
    require_root("installing apt packages")?;
    // The package lists may be stale or absent on a fresh machine: refresh once, only now.
    run_step(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run_step(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(true)
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", package])
        .stderr(Stdio::null())
        .output()
        .map(|out| out.status.success() && out.stdout.starts_with(b"ii"))
        .unwrap_or(false)
}

fn nightly() -> Result<bool> {
    let mut installed = false;
    let toolchains = stdout_of(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly-")) {
        println!("setup: installing rust toolchain nightly");
        run_step(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
        installed = true;
    }
    let components = stdout_of(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !components.lines().any(|l| l.trim() == "rust-src") {
        println!("setup: installing rust-src for nightly");
        run_step(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
        installed = true;
    }
    Ok(installed)
}

fn bpf_linker() -> Result<bool> {
    if tool_version("bpf-linker")
        .as_deref()
        .is_some_and(|v| v.split_whitespace().any(|w| w == BPF_LINKER_VERSION))
    {
        return Ok(false);
    }
    println!("setup: installing bpf-linker {BPF_LINKER_VERSION}");
    // bpf-linker must link against the same LLVM major as nightly rustc (22); its default
    // feature wants another LLVM, and llvm-config must be found first on PATH.
    let path = format!(
        "/usr/lib/llvm-22/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    run_step(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("PATH", path),
    )?;
    Ok(true)
}

fn musl_target() -> Result<bool> {
    let targets = stdout_of(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if targets.lines().any(|l| l.trim() == MUSL_TARGET) {
        return Ok(false);
    }
    println!("setup: installing the rust target {MUSL_TARGET} (the static build)");
    run_step(Command::new("rustup").args(["target", "add", MUSL_TARGET]))?;
    Ok(true)
}

fn cargo_deb() -> Result<bool> {
    if tool_version("cargo-deb").is_some_and(|v| v.contains(CARGO_DEB_VERSION)) {
        return Ok(false);
    }
    println!("setup: installing cargo-deb {CARGO_DEB_VERSION} (builds the .deb)");
    run_step(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())).args([
            "install",
            "cargo-deb",
            "--locked",
            "--version",
            CARGO_DEB_VERSION,
        ]),
    )?;
    Ok(true)
}

fn bpffs() -> Result<bool> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, target, fstype) = (fields.next(), fields.next(), fields.next());
        target == Some(BPFFS) && fstype == Some("bpf")
    });
    if mounted {
        return Ok(false);
    }
    println!("setup: mounting bpffs at {BPFFS}");
    require_root("mounting bpffs")?;
    run_step(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    Ok(true)
}

/// What `program --version` prints, if it runs.
fn tool_version(program: &str) -> Option<String> {
    Command::new(program)
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn stdout_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run `{}`", crate::show(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            crate::show(cmd),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where the CrowdSec binaries the tests run are unpacked (`usr/bin/crowdsec`, `cscli`).
const CROWDSEC_DIR: &str = "target/crowdsec";

/// Debian's crowdsec package unpacked, not installed: its postinst registers with CrowdSec's
/// online API and fails without internet, but its binaries run a Local API for the tests.
fn crowdsec() -> Result<bool> {
    let dir = crate::repo_root().join(CROWDSEC_DIR);
    if dir.join("usr/bin/crowdsec").exists() && dir.join("usr/bin/cscli").exists() {
        return Ok(false);
    }
    println!(
        "setup: unpacking Debian's crowdsec into {} (apt-get download; dpkg -x: not installed, \
         the tests run its Local API)",
        dir.display()
    );
    let download = dir.with_extension("download");
    let partial = dir.with_extension("partial");
    for stale in [&download, &partial, &dir] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)?;
        }
    }
    std::fs::create_dir_all(&download)?;
    run_step(
        Command::new("apt-get")
            .args(["download", "crowdsec"])
            .current_dir(&download),
    )?;
    let deb = std::fs::read_dir(&download)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download crowdsec left no .deb")?;
    run_step(Command::new("dpkg").arg("-x").arg(&deb).arg(&partial))?;
    std::fs::rename(&partial, &dir)?;
    std::fs::remove_dir_all(&download)?;
    Ok(true)
}
