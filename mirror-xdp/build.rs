//! Builds the eBPF crate with nightly (aya-build) and leaves its object in OUT_DIR.
//!
//! `MIRROR_XDP_SKIP_EBPF=1` writes an empty object instead, for quick unit-test builds of
//! the pure-Rust parts on a machine without the eBPF toolchain; loading then fails clearly.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=MIRROR_XDP_SKIP_EBPF");
    if std::env::var_os("MIRROR_XDP_SKIP_EBPF").is_some() {
        let out = PathBuf::from(std::env::var("OUT_DIR")?);
        for object in ["mirror-xdp", "baseline", "trafficgen"] {
            std::fs::write(out.join(object), [])?;
        }
        return Ok(());
    }
    let package = aya_build::Package {
        name: "mirror-xdp-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../mirror-xdp-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
