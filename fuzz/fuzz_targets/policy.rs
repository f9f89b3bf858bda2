//! The policy parser: no panic, and every rejection a clear error (file:line:col: message).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// A private folder for the policy's set file, made once per fuzzing process.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mirror-xdp-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the fuzz folder");
        dir
    })
}

fuzz_target!(|data: &[u8]| mirror_xdp_fuzz::check_policy(data, dir()));
