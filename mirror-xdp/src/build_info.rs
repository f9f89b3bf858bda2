//! Which build this is (build.rs): `--version` says it, and the state record keeps the eBPF
//! object hash of the build whose programs are in force, for `status`.

/// The version of the crate.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit this binary was built from ("unknown" outside a checkout).
pub const COMMIT: &str = env!("MIRROR_XDP_COMMIT");

/// SHA-256 of the embedded XDP/egress object, in hex.
pub const EBPF_OBJECT_SHA256: &str = env!("MIRROR_XDP_EBPF_SHA256");

/// What `mirror-xdp --version` prints after the name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("MIRROR_XDP_COMMIT"),
    "\neBPF object: sha256:",
    env!("MIRROR_XDP_EBPF_SHA256"),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_hash_is_a_sha256_in_hex() {
        assert_eq!(EBPF_OBJECT_SHA256.len(), 64);
        assert!(EBPF_OBJECT_SHA256.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(LONG_VERSION.starts_with(VERSION));
        assert!(!COMMIT.is_empty());
    }
}
