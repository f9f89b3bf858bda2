//! The kernel program against the reference model: the same frames through
//! BPF_PROG_TEST_RUN and through `mirror_xdp::model::classify`, for several policies.
//!
//! Each frame's action (pass/drop) must agree; every 500 frames the kernel's per-reason
//! counters must equal the model's tallies (that checks the reason of every frame, monitor
//! mode included), and at the end every per-port counter must too. A disagreement prints the
//! frame in hex. Needs root (BPF); without it the test says so and skips.

use std::collections::BTreeMap;
use std::path::Path;

use mirror_xdp::{
    maps::ReasonCount,
    model::{self, ModelState, Parsed, classify},
    policy::{Policy, Proto},
    testrun::{TestProgram, XDP_DROP, XDP_PASS},
};
use mirror_xdp_common::{Reason, port_index};
use mirror_xdp_tests::frames::{FrameGen, truncations};

const RANDOM_FRAMES: usize = 100_000;
/// Frames whose every truncation is run too.
const TRUNCATED_FRAMES: usize = 400;
const CHECK_EVERY: usize = 500;

const MIRROR: &str = r#"
version = 1
[sets]
admins = ["203.0.113.0/24", "2001:db8:a::/48"]
peers = ["198.51.100.0/25", "2001:db8:b::/48", "100.64.0.1"]
[[ports]]
proto = "tcp"
ports = [80, 443, 873, "30001-30010"]
[[ports]]
proto = "tcp"
ports = [22]
from = ["admins"]
[[ports]]
proto = "tcp"
ports = [8080, 5000, 9000, 3128]
from = ["peers"]
[[ports]]
proto = "udp"
ports = [5140, "60000-60010"]
[sources]
allow = ["admins"]
deny = ["192.0.2.0/24", "2001:db8:bad::/48", "198.51.100.64/26"]
"#;

const FLIPPED: &str = r#"
version = 1
[settings]
default = "pass"
icmp = "drop"
fragments = "drop"
other_protocols = "pass"
return_traffic = false
[[ports]]
proto = "udp"
ports = [53, 123, "1-1024"]
from = ["0.0.0.0/1", "2001:db8::/32"]
[[ports]]
proto = "tcp"
ports = ["1-65535"]
from = ["198.51.100.0/24", "::/0"]
[sources]
deny = ["0.0.0.0/2", "2001:db8:8000::/33"]
allow = ["198.51.100.7", "2001:db8::/33"]
"#;

fn monitor(text: &str) -> String {
    text.replacen(
        "version = 1",
        "version = 1\n[settings]\nmode = \"monitor\"",
        1,
    )
}

fn root() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: BPF test runs need root (run through `cargo xtask test`)");
    }
    root
}

#[test]
fn mirror_policy_agrees_with_model() {
    differential("mirror", MIRROR, 1);
}

#[test]
fn flipped_settings_agree_with_model() {
    differential("flipped", FLIPPED, 2);
}

#[test]
fn monitor_mode_agrees_with_model() {
    differential("monitor", &monitor(MIRROR), 3);
}

#[test]
fn example_policy_agrees_with_model() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mirror.toml");
    let text = std::fs::read_to_string(&path).expect("examples/mirror.toml");
    differential("examples/mirror.toml", &text, 4);
}

/// Model tallies in the shape of the kernel counters.
#[derive(Default)]
struct Tally {
    reasons: BTreeMap<Reason, ReasonCount>,
    ports: BTreeMap<(Proto, u16), (u64, u64)>,
}

fn differential(name: &str, text: &str, seed: u64) {
    if !root() {
        return;
    }
    let policy = Policy::parse(text, Path::new(name)).expect("valid policy");
    let mut program = TestProgram::load(&policy).expect("load the XDP program");
    let mut state = ModelState::default();
    let mut tally = Tally::default();
    let mut frames_gen = FrameGen::new(seed, &policy);
    let mut rng_state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;

    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(CHECK_EVERY);
    let mut total = 0usize;
    let mut run_batch = |batch: &mut Vec<Vec<u8>>,
                         program: &mut TestProgram,
                         state: &ModelState,
                         tally: &mut Tally| {
        for frame in batch.iter() {
            judge_one(program, &policy, state, tally, frame);
        }
        check_reasons(program, tally, batch);
        total += batch.len();
        batch.clear();
    };

    for i in 0..RANDOM_FRAMES {
        let frame = frames_gen.next();
        // One frame in 20 that parses as TCP/UDP gets a live flow: return traffic.
        if xorshift(&mut rng_state).is_multiple_of(20)
            && let Ok(Parsed::Ip(packet)) = model::parse(&frame)
            && let Some(key) = model::flow_key(&packet)
        {
            // The batch before must be judged with the state it was generated for.
            run_batch(&mut batch, &mut program, &state, &mut tally);
            program
                .maps
                .insert_flow(&key, mirror_xdp::maps::monotonic_ns())
                .expect("insert flow");
            state.flows.insert(key);
        }
        if i < TRUNCATED_FRAMES {
            for cut in truncations(&frame) {
                batch.push(cut.to_vec());
                if batch.len() == CHECK_EVERY {
                    run_batch(&mut batch, &mut program, &state, &mut tally);
                }
            }
        } else {
            batch.push(frame);
        }
        if batch.len() >= CHECK_EVERY {
            run_batch(&mut batch, &mut program, &state, &mut tally);
        }
    }
    run_batch(&mut batch, &mut program, &state, &mut tally);
    check_ports(&program, &tally);
    let summary: Vec<String> = tally
        .reasons
        .iter()
        .map(|(r, c)| format!("{}={}", r.name(), c.packets))
        .collect();
    eprintln!(
        "{name}: {total} frames, {} flows, zero disagreements ({})",
        state.flows.len(),
        summary.join(" ")
    );
    assert!(total >= RANDOM_FRAMES, "ran {total} frames");
}

fn judge_one(
    program: &mut TestProgram,
    policy: &Policy,
    state: &ModelState,
    tally: &mut Tally,
    frame: &[u8],
) {
    let model = classify(frame, policy, state);
    let action = program.run(frame).expect("test run");
    let expected = if model.passes { XDP_PASS } else { XDP_DROP };
    assert_eq!(
        action,
        expected,
        "kernel action {action} but the model says {} ({}) for frame {}",
        if model.passes { "pass" } else { "drop" },
        model.reason.name(),
        hex(frame)
    );
    let count = tally.reasons.entry(model.reason).or_default();
    count.packets += 1;
    count.bytes += frame.len() as u64;
    if model.dropped {
        count.drop_packets += 1;
        count.drop_bytes += frame.len() as u64;
    }
    if let Some(port) = model.rule_port {
        let entry = tally.ports.entry(port).or_default();
        if model.dropped {
            entry.1 += 1;
        } else {
            entry.0 += 1;
        }
    }
}

/// The kernel's counters must equal the model's tallies. If they do not, the batch is run
/// again frame by frame to name the frame whose reason differs.
fn check_reasons(program: &mut TestProgram, tally: &Tally, batch: &[Vec<u8>]) {
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

fn check_ports(program: &TestProgram, tally: &Tally) {
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

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}
