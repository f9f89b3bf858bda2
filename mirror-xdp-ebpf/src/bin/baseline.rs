//! Bare XDP programs that do nothing but return a verdict: the yardstick the benchmarks and
//! the closing figures measure the enforcer against. Multi-buffer capable (`frags`) like
//! the enforcer, so they attach natively at any MTU the enforcer does.
// On the host (clippy, `cargo check --workspace`) these are ordinary std binaries.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
// Dependencies of the package's other programs; these bare ones need none of them.
use {mirror_xdp_common as _, network_types as _};

#[xdp(frags)]
pub fn bare_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp(frags)]
pub fn bare_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
