//! The mirror-xdp kernel programs: the XDP enforcer (`mirror_xdp`) and the egress flow
//! recorder (`mirror_egress`) that makes return traffic possible.
// On the host (clippy, `cargo check --workspace`) these are ordinary std binaries.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Shared map words are read, written and counted with BPF assembly (see `cells`).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

mod cells;
mod clock;
mod egress;
mod events;
mod limits;
mod maps;
mod parse;
mod sources;
mod syn_options;
mod syncookie;
mod trace;
mod verdict;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use mirror_xdp_common::{Reason, capacity, config_flag, drop_event_flag, stats_index, trace_flag};

use crate::{
    maps::{CONFIG, PORT_STATS, PROTOCOL_STATS, STATS},
    parse::{Frame, Parsed, parse},
    verdict::{Verdict, judge},
};

/// Loaded as multi-buffer capable (`frags`): native mode attaches at any MTU, and a jumbo
/// frame arrives as its first buffer plus fragments (see `Frame`).
#[xdp(frags)]
pub fn mirror_xdp(ctx: XdpContext) -> u32 {
    let frame = Frame::xdp(&ctx);
    let Some(config) = CONFIG.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let flags = config.flags;
    // Until user space has written a whole policy, judge nothing.
    if flags & config_flag::LOADED == 0 {
        return xdp_action::XDP_PASS;
    }
    let monitor = flags & config_flag::MONITOR != 0;
    let mut tx = false;
    // The bytes to count: the whole frame, except for a well-formed IP packet that ends
    // inside its first buffer (see `Frame::counted_len`).
    let (verdict, bytes) = match parse(&frame) {
        Parsed::NonIp => (Verdict::new(Reason::NonIp, false), frame.whole_len()),
        Parsed::Malformed => (Verdict::new(Reason::Malformed, true), frame.whole_len()),
        Parsed::Ip(pkt) => {
            // Taken before a cookie answer reads the whole length.
            let bytes = frame.counted_len();
            let mut verdict = judge(&pkt, config);
            // Monitor mode passes the SYN (counted as `syn_cookie`) instead of answering it.
            if verdict.reason == Reason::SynCookie && !monitor {
                let whole_len = frame.whole_len() as u32;
                tx = syncookie::answer(ctx.ctx, pkt.ip_off as u32, pkt.v6, whole_len);
                if !tx {
                    verdict.reason = Reason::SynFlood;
                    verdict.drop = true;
                }
            }
            // The verdict is final: sample the drop for the daemon's log. Here, while the
            // packet is at hand (a malformed packet has no source to report); keeping the
            // parse result alive past the match makes LLVM merge paths that read registers
            // the verifier sees as uninitialised.
            if verdict.drop && events::sampled(config) {
                let flags = if monitor {
                    drop_event_flag::WOULD_DROP
                } else {
                    0
                };
                let meta = events::meta(pkt.v6, pkt.proto, pkt.dport, verdict.reason as u8, flags);
                events::emit(&pkt.src, meta);
            }
            if trace::on() {
                let flags = if tx {
                    trace_flag::TX
                } else if verdict.drop {
                    trace_flag::DROP | if monitor { trace_flag::MONITOR } else { 0 }
                } else {
                    0
                };
                // SAFETY: the context the kernel passed; its fields are readable.
                let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
                trace::emit(&pkt, verdict.reason as u32 | (flags as u32) << 8, ifindex);
            }
            (verdict, bytes)
        }
    };
    count(&verdict, bytes);
    if tx {
        xdp_action::XDP_TX
    } else if verdict.drop && !monitor {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// Per-CPU counters: packets and bytes per (reason, dropped), packets per rule port or
/// protocol.
#[inline(always)]
fn count(verdict: &Verdict, bytes: u64) {
    if let Some(counter) = STATS.get_ptr_mut(stats_index(verdict.reason, verdict.drop)) {
        // SAFETY: a pointer from a lookup of this per-CPU map, valid for the program run;
        // only this CPU's program run writes the slot, so plain adds are exact.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
    let counter = match verdict.port_slot {
        Some(slot) if slot < capacity::PORTS => PORT_STATS.get_ptr_mut(slot),
        Some(slot) => PROTOCOL_STATS.get_ptr_mut(slot - capacity::PORTS),
        None => None,
    };
    if let Some(counter) = counter {
        // SAFETY: as for STATS above: a per-CPU slot of this program run.
        unsafe {
            if verdict.drop {
                (*counter).drop_packets += 1;
            } else {
                (*counter).pass_packets += 1;
            }
        }
    }
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
