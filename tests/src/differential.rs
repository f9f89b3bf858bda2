//! The checking half of the differential tests (tests/tests/differential.rs): one frame
//! through the kernel program and the reference model, the model's verdicts tallied in the
//! shape of the kernel's counters, and the counters compared, naming the frame that differs.

use std::collections::BTreeMap;

use mirror_xdp::{
    kernel::maps::ReasonCount,
    model::{self, ModelState, Parsed, classify_buffers},
    observe::testrun::{TestProgram, XDP_DROP, XDP_PASS, XDP_TX},
    policy::{Policy, Proto},
};
use mirror_xdp_common::{Reason, port_index, protocol_index};

/// A test run puts at most this much of a frame in its first buffer and the rest in
/// fragments: a page less the XDP headroom (256) and the shared info (320), as the kernel's
/// `bpf_prog_test_run_xdp` lays out a multi-buffer frame for a frags-capable program.
pub const TEST_RUN_FIRST_BUFFER: usize = 4096 - 256 - 320;

/// Model tallies in the shape of the kernel counters.
#[derive(Default)]
pub struct Tally {
    pub reasons: BTreeMap<Reason, ReasonCount>,
    pub ports: BTreeMap<(Proto, u16), (u64, u64)>,
    /// (passed, dropped) per IP protocol a `[[protocols]]` rule decided.
    pub protocols: BTreeMap<u8, (u64, u64)>,
    /// SYNs over the global budget that passed to keep the kernel's cookie check alive.
    pub keepalives: usize,
    /// Cookie SYN-ACKs with a timestamp cookie, and those with a window scale too.
    pub timestamp_cookies: usize,
    pub wscale_cookies: usize,
}

/// Runs `frame` through the kernel and the model at the model's clock: the actions must
/// agree (a SYN-ACK byte for byte but for the cookie); the model's verdict goes into `tally`.
pub fn judge_one(
    program: &mut TestProgram,
    policy: &Policy,
    state: &mut ModelState,
    tally: &mut Tally,
    frame: &[u8],
) {
    program.set_clock(state.now_ns).expect("set the test clock");
    let budget_before = state.global_syn_tat_ns;
    let first_buffer = frame.len().min(TEST_RUN_FIRST_BUFFER);
    let model = classify_buffers(frame, first_buffer, policy, state);
    let (action, out) = program.run_output(frame).expect("test run");
    let (expected, name) = if model.tx {
        (XDP_TX, "tx")
    } else if model.passes {
        (XDP_PASS, "pass")
    } else {
        (XDP_DROP, "drop")
    };
    assert_eq!(
        action,
        expected,
        "kernel action {action} but the model says {name} ({}) at {} ns for frame {}",
        model.reason.name(),
        state.now_ns,
        hex(frame)
    );
    if model.tx {
        let tcp_len = check_syn_ack(frame, &out, state);
        tally.timestamp_cookies += usize::from(tcp_len >= 36);
        tally.wscale_cookies += usize::from(tcp_len == 40);
    }
    // A SYN allowed while the global budget stood still was over it: the keepalive.
    if policy.limits.syn_cookies
        && model.reason == Reason::Allowed
        && state.global_syn_tat_ns == budget_before
        && is_syn(frame)
    {
        tally.keepalives += 1;
    }
    let count = tally.reasons.entry(model.reason).or_default();
    count.packets += 1;
    count.bytes += model.bytes as u64;
    if model.dropped {
        count.drop_packets += 1;
        count.drop_bytes += model.bytes as u64;
    }
    let rule_counter = match (model.rule_port, model.rule_protocol) {
        (Some(port), _) => Some(tally.ports.entry(port).or_default()),
        (None, Some(protocol)) => Some(tally.protocols.entry(protocol).or_default()),
        (None, None) => None,
    };
    if let Some(entry) = rule_counter {
        if model.dropped {
            entry.1 += 1;
        } else {
            entry.0 += 1;
        }
    }
}

/// The kernel's counters must equal the model's tallies. If they do not, the batch is run
/// again frame by frame to name the frame whose reason differs.
pub fn check_reasons(program: &mut TestProgram, tally: &Tally, batch: &[Vec<u8>]) {
    let kernel = program.maps.reason_counts().expect("read counters");
    let mismatch = kernel
        .iter()
        .find(|(r, c)| tally.reasons.get(r).copied().unwrap_or_default() != *c);
    let Some((reason, count)) = mismatch else {
        return;
    };
    let model = tally.reasons.get(reason).copied().unwrap_or_default();
    for frame in batch {
        let before = program.maps.reason_counts().expect("read counters");
        program.run(frame).expect("test run");
        let after = program.maps.reason_counts().expect("read counters");
        let moved: Vec<String> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b.1 != a.1)
            .map(|(b, a)| {
                let dropped = a.1.drop_packets != b.1.drop_packets;
                format!("{}{}", a.0.name(), if dropped { " (drop)" } else { "" })
            })
            .collect();
        eprintln!("frame {} -> kernel counted {:?}", hex(frame), moved);
    }
    panic!(
        "counter for {} disagrees: kernel {count:?}, model {model:?} (frames of the batch above)",
        reason.name()
    );
}

/// Every per-port and per-protocol counter of the kernel must equal the model's tally.
pub fn check_ports(program: &TestProgram, tally: &Tally) {
    for protocol in 0..=u8::MAX {
        let kernel = program
            .maps
            .port_count(protocol_index(protocol))
            .expect("read protocol counter");
        let (pass, drop) = tally.protocols.get(&protocol).copied().unwrap_or_default();
        assert_eq!(
            (kernel.pass_packets, kernel.drop_packets),
            (pass, drop),
            "protocol counter {protocol}: kernel (pass, drop) vs model"
        );
    }
    for proto in [Proto::Tcp, Proto::Udp] {
        for port in 0..=u16::MAX {
            let slot = port_index(mirror_xdp::compile::proto_slot(proto), port);
            let kernel = program.maps.port_count(slot).expect("read port counter");
            let (pass, drop) = tally.ports.get(&(proto, port)).copied().unwrap_or_default();
            assert_eq!(
                (kernel.pass_packets, kernel.drop_packets),
                (pass, drop),
                "port counter {}/{port}: kernel (pass, drop) vs model",
                proto.name()
            );
        }
    }
}

/// Is the frame a TCP SYN without ACK?
fn is_syn(frame: &[u8]) -> bool {
    let (syn, ack) = (model::tcp_flag::SYN, model::tcp_flag::ACK);
    match model::parse(frame) {
        Ok(Parsed::Ip(packet)) => {
            matches!(packet.l4, model::L4::Tcp { flags, .. } if flags & (syn | ack) == syn)
        }
        _ => false,
    }
}

/// The kernel's SYN-ACK must be the model's with the kernel's cookie (the one thing the
/// model cannot know: the kernel keys it with a secret). Returns its TCP header's length.
fn check_syn_ack(syn: &[u8], reply: &[u8], state: &ModelState) -> usize {
    let Ok(Parsed::Ip(packet)) = model::parse(syn) else {
        panic!("a SYN cookie for an unparsable frame {}", hex(syn));
    };
    let seq_at = packet.ip_offset + packet.ip_header_len + 4;
    let cookie = reply
        .get(seq_at..seq_at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or_else(|| panic!("SYN-ACK {} too short for {}", hex(reply), hex(syn)));
    let expected = model::syn_ack(syn, cookie, &state.config, state.now_ns)
        .expect("the model answers this SYN");
    assert_eq!(
        hex(reply),
        hex(&expected),
        "kernel SYN-ACK (left) differs from the model's (right) for frame {}",
        hex(syn)
    );
    reply.len() - (packet.ip_offset + packet.ip_header_len)
}

/// A frame as hex, for failure messages.
pub fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}
