//! The reference model's frame parser and classifier: no panic on any frame.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mirror_xdp_fuzz::check_frame(data));
