//! End to end over a VM's virtio-net NICs (`cargo xtask vm-test --bench`, whose VM has the
//! two bridged NICs of the test matrix): the veth table's SYN flood, sent by the live-frames
//! generator out of the client's virtio-net NIC, across the bridge on the VM's host side and
//! in through the server's, where mirror-xdp or a bare XDP_DROP drops it in the driver
//! (native mode). The CPUs are emulated: only the ratio of the two means anything.

use anyhow::{Context, Result, bail};
use mirror_xdp::observe::testrun::Baseline;
use mirror_xdp_tests::{
    flood::syn_template,
    netns::is_root,
    testbed::{CLIENT_IF, CLIENT_V4},
    virtio,
};

use crate::end_to_end::{CLOSED_PORT, Dropper, Outcome, sample_all};

/// Fewer frames than on veth: an emulated guest sends and receives some 100 times slower.
pub const FRAMES: u64 = 200_000;
pub const REPETITIONS: usize = 5;

pub fn run(policy_text: &str) -> Result<Outcome> {
    if !is_root() {
        bail!("the virtio-net end-to-end runs need root");
    }
    let bin = std::env::current_exe()?.with_file_name("mirror-xdp");
    let bed =
        virtio::testbed().context("the VM's virtio-net NICs (cargo xtask vm-test --bench)")?;
    // The generator's frames leave a virtio-net NIC only while it runs an XDP program: the
    // driver sets up its XDP send queues then.
    let mut sender = Baseline::load("bare_pass")?;
    bed.client.enter(|| sender.attach_native(CLIENT_IF))?;
    let policy = bed.work_dir().join("bench-policy.toml");
    std::fs::write(&policy, policy_text)?;
    let template = syn_template(&bed, CLIENT_V4.into(), CLOSED_PORT)?;
    let droppers = [Dropper::BareDrop, Dropper::MirrorXdp];
    let rows = sample_all(
        &bed,
        &bin,
        &policy,
        &droppers,
        &template,
        FRAMES,
        REPETITIONS,
    )?;
    drop(sender);
    Ok(Outcome {
        rows,
        skipped: Vec::new(),
    })
}
