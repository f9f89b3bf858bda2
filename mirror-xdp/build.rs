//! Builds the eBPF crate with nightly (aya-build) and leaves its object in OUT_DIR, and
//! gives the crate what `--version` and `status` say about this build: the git commit
//! (`MIRROR_XDP_COMMIT`) and the SHA-256 of the embedded XDP object (`MIRROR_XDP_EBPF_SHA256`).
//!
//! `MIRROR_XDP_SKIP_EBPF=1` writes an empty object instead, for quick unit-test builds of
//! the pure-Rust parts on a machine without the eBPF toolchain; loading then fails clearly.
//! A build outside a git checkout (a source tarball) takes the commit from the environment
//! variable `MIRROR_XDP_COMMIT`, or says "unknown".

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=MIRROR_XDP_SKIP_EBPF");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    if std::env::var_os("MIRROR_XDP_SKIP_EBPF").is_some() {
        for object in ["mirror-xdp", "baseline", "trafficgen"] {
            std::fs::write(out.join(object), [])?;
        }
    } else {
        let package = aya_build::Package {
            name: "mirror-xdp-ebpf",
            root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../mirror-xdp-ebpf"),
            ..Default::default()
        };
        aya_build::build_ebpf([package], aya_build::Toolchain::default())?;
        // aya-build watches the eBPF crate only; the types and helpers it shares with user
        // space change the object too.
        println!(
            "cargo:rerun-if-changed={}",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../mirror-xdp-common")
        );
    }
    let object = std::fs::read(out.join("mirror-xdp"))?;
    let hash: String = Sha256::digest(&object)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=MIRROR_XDP_EBPF_SHA256={hash}");
    println!("cargo:rustc-env=MIRROR_XDP_COMMIT={}", commit());
    Ok(())
}

/// The commit checked out, from `MIRROR_XDP_COMMIT` or git; rebuilt when HEAD moves.
fn commit() -> String {
    println!("cargo:rerun-if-env-changed=MIRROR_XDP_COMMIT");
    if let Ok(commit) = std::env::var("MIRROR_XDP_COMMIT") {
        return commit;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return "unknown".into();
    };
    // HEAD, the branch it names and packed-refs: what a commit or a checkout changes (only
    // files that exist: cargo reruns a build script for a missing one every time).
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    commit
}
