//! The egress program against the reference model (`mirror_xdp::model::classify_egress`):
//! the same frames, as packets this host sends, through BPF_PROG_TEST_RUN and through the
//! model, for several `[egress]` and return-traffic settings.
//!
//! Each frame's action (sent or dropped) must agree; every 500 frames the kernel's
//! `egress_denied` counter (packets and bytes) must equal the model's tally; at the end the
//! flows the kernel recorded for return traffic must be exactly the model's. A disagreement
//! names the frame in hex. Each policy must reach what it allows for: denied and admitted
//! connections, and recorded flows. Needs root (BPF): without it every test fails.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::collections::HashSet;
use std::path::Path;

use mirror_xdp::{
    model::classify_egress,
    observe::testrun::{TC_DROP, TC_NEXT, TestProgram},
    policy::Policy,
};
use mirror_xdp_common::{FlowKey, Reason};
use mirror_xdp_tests::differential::hex;
use mirror_xdp_tests::frames::{FrameGen, truncations};
use mirror_xdp_tests::require_root;

const FRAMES: usize = 100_000;
/// Frames whose every truncation is run too.
const TRUNCATED_FRAMES: usize = 400;
const CHECK_EVERY: usize = 500;
/// A test run's skb is linear: at most a page less its headroom (NET_SKB_PAD, 64) and
/// its shared info (320). The generator's jumbo frames are left out.
const SKB_TEST_RUN_MAX: usize = 4096 - 64 - 320;
const ETH_HLEN: usize = 14;

/// A mirror that syncs from its upstreams and asks its resolvers, serves HTTP, rsync and
/// syslog, and DNS on one address (replies from udp/53 there are no connections it opens).
const UPSTREAMS: &str = r#"
version = 1
[sets]
upstreams = ["192.0.2.80", "2001:db8:80::/48"]
resolvers = ["10.0.0.53", "fd00::53"]
[[ports]]
proto = "tcp"
ports = [80, 443, 873]
[[ports]]
proto = "udp"
ports = [5140, "60000-60010"]
[[ports]]
proto = "udp"
ports = [53]
to = ["10.0.0.1"]
[egress]
default = "drop"
[[egress.ports]]
proto = "tcp"
ports = [873, 443]
to = ["upstreams"]
[[egress.ports]]
proto = "tcp"
ports = [80, 443]
to = ["198.51.100.0/24", "2001:db8:81::/64"]
[[egress.ports]]
proto = "udp"
ports = [53, 123]
to = ["resolvers"]
[[egress.ports]]
proto = "udp"
ports = ["33434-33534"]
[[egress.ports]]
proto = "tcp"
ports = [22]
"#;

/// What a run met: the model's counts, to check the policy's branches were compared.
#[derive(Debug, Default)]
struct Reached {
    frames: usize,
    /// Frames a test run refuses: see [`test_run_refuses`].
    refused: usize,
    denied: usize,
    /// Connections the host opened that the rules admitted (or that needed no rule).
    opened: usize,
    flows: usize,
}

#[test]
fn egress_rules_agree_with_model() {
    let reached = differential("upstreams", UPSTREAMS, 21);
    assert!(
        reached.denied > 1_000 && reached.opened > 1_000 && reached.flows > 1_000,
        "{reached:?}"
    );
}

/// Monitor mode counts what it would drop and sends it; the flow is recorded.
#[test]
fn monitor_mode_egress_agrees_with_model() {
    let text = UPSTREAMS.replacen(
        "version = 1",
        "version = 1\n[settings]\nmode = \"monitor\"",
        1,
    );
    let reached = differential("monitor", &text, 22);
    assert!(
        reached.denied > 1_000 && reached.flows > 1_000,
        "{reached:?}"
    );
}

/// Egress rules without return traffic: nothing is recorded, denials are the same.
#[test]
fn egress_without_return_traffic_agrees_with_model() {
    let text = UPSTREAMS.replacen(
        "version = 1",
        "version = 1\n[settings]\nreturn_traffic = false",
        1,
    );
    let reached = differential("no-return", &text, 23);
    assert!(reached.denied > 1_000 && reached.flows == 0, "{reached:?}");
}

/// No `[egress]`: the program only records the connections the host opens.
#[test]
fn return_traffic_recording_agrees_with_model() {
    let text = UPSTREAMS.split("[egress]").next().expect("a policy");
    let reached = differential("return-only", text, 24);
    assert!(reached.denied == 0 && reached.flows > 1_000, "{reached:?}");
}

fn differential(name: &str, text: &str, seed: u64) -> Reached {
    require_root();
    let policy = Policy::parse(text, Path::new(name)).expect("valid policy");
    let mut program = TestProgram::load(&policy).expect("load the XDP program");
    program.load_egress().expect("load the egress program");
    let mut generator = FrameGen::new(seed, &policy);
    let mut reached = Reached::default();
    let mut flows: HashSet<FlowKey> = HashSet::new();
    let (mut denied_packets, mut denied_bytes) = (0u64, 0u64);
    let mut recent: Vec<Vec<u8>> = Vec::with_capacity(CHECK_EVERY);
    for i in 0..FRAMES {
        let frame = generator.next();
        if frame.len() > SKB_TEST_RUN_MAX {
            continue;
        }
        let cuts: Vec<&[u8]> = if i < TRUNCATED_FRAMES {
            truncations(&frame).collect()
        } else {
            vec![&frame]
        };
        for cut in cuts {
            let model = classify_egress(cut, &policy);
            let action = match program.time_egress(cut, 1) {
                Ok((action, _)) => action,
                Err(_) if test_run_refuses(cut) => {
                    reached.refused += 1;
                    continue;
                }
                Err(e) => panic!("{name}: test run of frame {}: {e}", hex(cut)),
            };
            let expected = if model.passes { TC_NEXT } else { TC_DROP };
            assert_eq!(
                action,
                expected,
                "{name}: kernel action {action:#x} but the model says {} for frame {}",
                if model.passes { "send" } else { "drop" },
                hex(cut)
            );
            if model.denied {
                reached.denied += 1;
                denied_packets += 1;
                denied_bytes += cut.len() as u64;
            }
            if model.passes && model.records.is_some() {
                reached.opened += 1;
            }
            flows.extend(model.records);
            reached.frames += 1;
            recent.push(cut.to_vec());
            if recent.len() == CHECK_EVERY {
                check_denied(name, &program, (denied_packets, denied_bytes), &recent);
                recent.clear();
            }
        }
    }
    check_denied(name, &program, (denied_packets, denied_bytes), &recent);
    check_flows(name, &program, &flows);
    reached.flows = flows.len();
    eprintln!("{name}: zero disagreements: {reached:?}");
    reached
}

/// A test run refuses an skb with nothing past the Ethernet header, and one whose
/// Ethernet type says IPv4 or IPv6 but whose IP header does not fit (the host's stack
/// never sends either; the model calls them non-IP or malformed, which are sent).
fn test_run_refuses(frame: &[u8]) -> bool {
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => frame.len() < ETH_HLEN + 20,
        0x86dd => frame.len() < ETH_HLEN + 40,
        _ => frame.len() == ETH_HLEN,
    }
}

/// The kernel's `egress_denied` counter (packets, bytes) must be the model's.
fn check_denied(name: &str, program: &TestProgram, model: (u64, u64), batch: &[Vec<u8>]) {
    let counts = program.maps.reason_counts().expect("read counters");
    let (_, kernel) = counts
        .iter()
        .find(|(r, _)| *r == Reason::EgressDenied)
        .expect("an egress_denied counter");
    if (kernel.drop_packets, kernel.drop_bytes) != model {
        for frame in batch {
            eprintln!("{}", hex(frame));
        }
        panic!(
            "{name}: egress_denied kernel (packets, bytes) = ({}, {}), model {model:?} \
             (one of the frames above)",
            kernel.drop_packets, kernel.drop_bytes
        );
    }
}

/// The flows the kernel recorded must be the model's, no more, no fewer.
fn check_flows(name: &str, program: &TestProgram, model: &HashSet<FlowKey>) {
    let kernel: HashSet<FlowKey> = program
        .maps
        .flows
        .keys()
        .collect::<Result<_, _>>()
        .expect("read the flow table");
    let only_kernel: Vec<&FlowKey> = kernel.difference(model).take(5).collect();
    let only_model: Vec<&FlowKey> = model.difference(&kernel).take(5).collect();
    assert!(
        only_kernel.is_empty() && only_model.is_empty(),
        "{name}: flows the kernel recorded and the model did not (first 5): {only_kernel:?}; \
         the model's the kernel did not record: {only_model:?}"
    );
}
