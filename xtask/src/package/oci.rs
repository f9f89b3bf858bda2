//! The OCI image archive, written directly (no container daemon, no registry): an OCI image
//! layout (oci-layout, index.json, blobs/sha256/...) in a tar file, the format that
//! `skopeo copy oci-archive:...`, `podman load` and `ctr images import` read. One layer
//! holds the static binary at /usr/local/sbin/mirror-xdp and nothing else; the config runs
//! `mirror-xdp run`, whose arguments the DaemonSet gives (deploy/kubernetes).

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::tarball::Tar;
use super::{Stamp, VERSION, gzip};

/// The name Kubernetes gives `image: mirror-xdp:<version>` (deploy/kubernetes), and so the
/// name the runtimes load the image under.
pub fn image_name() -> String {
    format!("docker.io/library/mirror-xdp:{VERSION}")
}

const BINARY: &str = "usr/local/sbin/mirror-xdp";

pub fn build(out: &Path, binary: &Path, stamp: &Stamp) -> Result<PathBuf> {
    let created = stamp.created.as_str();
    let mut layer = Tar::new(stamp.time);
    layer.file(Path::new(BINARY), &std::fs::read(binary)?, 0o755)?;
    let layer = layer.finish()?;
    let layer_gz = gzip(&layer)?;
    let config = json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": "0",
            "Entrypoint": [format!("/{BINARY}")],
            "Cmd": ["run"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": labels(stamp, created),
        },
        "rootfs": {"type": "layers", "diff_ids": [digest(&layer)]},
        "history": [{"created": created, "created_by": "cargo xtask package"}],
    });
    let config = bytes(&config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", &layer_gz)],
        "annotations": labels(stamp, created),
    });
    let manifest = bytes(&manifest);
    let mut entry = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
    entry["platform"] = json!({"architecture": "amd64", "os": "linux"});
    entry["annotations"] = json!({
        // podman and skopeo name the image by this one, containerd by its own.
        "org.opencontainers.image.ref.name": image_name(),
        "io.containerd.image.name": image_name(),
    });
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry],
    });

    let mut archive = Tar::new(stamp.time);
    archive.file(
        Path::new("oci-layout"),
        &bytes(&json!({"imageLayoutVersion": "1.0.0"})),
        0o644,
    )?;
    archive.file(Path::new("index.json"), &bytes(&index), 0o644)?;
    for blob in [&config, &manifest, &layer_gz] {
        let path = PathBuf::from("blobs/sha256").join(hex(blob));
        archive.file(&path, blob, 0o644)?;
    }
    let path = out.join(format!("mirror-xdp-{VERSION}-oci.tar"));
    std::fs::write(&path, archive.finish()?)?;
    Ok(path)
}

/// The standard OCI annotations, as labels of the config and annotations of the manifest.
fn labels(stamp: &Stamp, created: &str) -> Value {
    json!({
        "org.opencontainers.image.title": "mirror-xdp",
        "org.opencontainers.image.description": "XDP port-whitelist firewall for mirror servers",
        "org.opencontainers.image.version": VERSION,
        "org.opencontainers.image.revision": stamp.commit,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "MIT OR Apache-2.0",
    })
}

fn descriptor(media_type: &str, blob: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": digest(blob), "size": blob.len()})
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON")
}

fn hex(blob: &[u8]) -> String {
    Sha256::digest(blob)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn digest(blob: &[u8]) -> String {
    format!("sha256:{}", hex(blob))
}
