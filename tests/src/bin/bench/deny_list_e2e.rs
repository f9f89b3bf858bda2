//! The deny list end to end, next to the same list as an nftables interval set: SYNs from
//! random sources (all 32 bits, so caches stay cold) to a closed port, dropped at the
//! server veth either by mirror-xdp (denied or port_closed) or by an nftables netdev
//! ingress chain (`ip saddr @deny drop`, then `tcp dport 3306 drop`). Both drop every frame
//! and look the source up first; the table shows what one receiving core spends on it.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use mirror_xdp_tests::{
    flood::syn_template,
    netns::is_root,
    testbed::{CLIENT_V4, SERVER_IF, Testbed},
};

use crate::end_to_end::{
    CLOSED_PORT, Dropper, FRAMES, ReceiverThread, attach_baseline, capacity, flood, stats,
    tool_present,
};
use crate::scaling::{SIZES, deny_list, deny_list_text};

const REPETITIONS: usize = 3;

/// One list size: load times and the samples of both droppers.
pub struct Row {
    pub prefixes: usize,
    pub attach_ms: Vec<f64>,
    pub nft_load_ms: f64,
    pub mirror_ns: Vec<f64>,
    pub nft_ns: Vec<f64>,
}

pub fn run() -> Result<Vec<Row>> {
    if !is_root() || !tool_present("nft") {
        bail!("needs root and nftables");
    }
    let bin = std::env::current_exe()?.with_file_name("mirror-xdp");
    let bed = Testbed::new()?;
    let template = syn_template(&bed, CLIENT_V4.into(), CLOSED_PORT)?;
    let mut rows = Vec::new();
    for size in SIZES {
        let list = deny_list(size);
        let set_file = bed.work_dir().join(format!("deny-{size}.txt"));
        std::fs::write(&set_file, deny_list_text(&list))?;
        let policy = bed.work_dir().join(format!("deny-{size}.toml"));
        std::fs::write(
            &policy,
            format!(
                "version = 1\n[[ports]]\nproto = \"tcp\"\nports = [80]\n[sources]\ndeny = [{{ file = \"{}\" }}]\n",
                set_file.display()
            ),
        )?;
        let nft_load_ms = load_nft_set(&bed, &list)?;
        let mut row = Row {
            prefixes: size,
            attach_ms: Vec::new(),
            nft_load_ms,
            mirror_ns: Vec::new(),
            nft_ns: Vec::new(),
        };
        let measured = (0..REPETITIONS).try_for_each(|_| -> Result<()> {
            // mirror-xdp drops every frame before the nftables hook sees it.
            let policy = policy.to_str().context("UTF-8 path")?;
            let started = Instant::now();
            let out = bed.cli(&bin, &["attach", "--iface", SERVER_IF, "--policy", policy]);
            if !out.status.success() {
                bail!("attach: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            row.attach_ms.push(started.elapsed().as_secs_f64() * 1e3);
            let sample = receive(&bed, Dropper::MirrorXdp, &template);
            let out = bed.cli(&bin, &["detach"]);
            if !out.status.success() {
                bail!("detach: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            row.mirror_ns.push(sample?);

            let pass = attach_baseline(&bed, "bare_pass")?;
            let sample = receive(&bed, Dropper::NftSet, &template);
            drop(pass);
            row.nft_ns.push(sample?);
            Ok(())
        });
        let _ = bed.server.run_ok("nft", &["delete table netdev mxbench"]);
        measured.with_context(|| format!("{size} prefixes"))?;
        rows.push(row);
    }
    Ok(rows)
}

/// Receiver CPU ns per frame of one flood from random sources.
fn receive(bed: &Testbed, dropper: Dropper, template: &[u8]) -> Result<f64> {
    let receiver = ReceiverThread::start(bed)?;
    let sample = flood(bed, dropper, template, 32, FRAMES, &receiver);
    receiver.stop(bed);
    let sample = sample?;
    // The stack's own few frames (neighbour discovery) pass; the flood must not.
    if sample.dropped * 1000 < sample.received * 999 {
        bail!(
            "{}: dropped {} of {} frames",
            dropper.name(),
            sample.dropped,
            sample.received
        );
    }
    Ok(sample.receiver_ns)
}

/// The table and chain, the set filled from one `nft -f` file; returns the load time.
fn load_nft_set(bed: &Testbed, list: &[(u32, u8)]) -> Result<f64> {
    let elements: Vec<String> = list
        .iter()
        .map(|(a, len)| format!("{}/{len}", std::net::Ipv4Addr::from(*a)))
        .collect();
    let script = format!(
        "table netdev mxbench {{\n  set deny {{ type ipv4_addr; flags interval; auto-merge; elements = {{ {} }} }}\n  \
         chain ingress {{ type filter hook ingress device {SERVER_IF} priority 0;\n    \
         ip saddr @deny counter drop\n    tcp dport {CLOSED_PORT} counter drop\n  }}\n}}\n",
        elements.join(", ")
    );
    let file = bed.work_dir().join("deny.nft");
    std::fs::write(&file, script)?;
    let started = Instant::now();
    bed.server
        .run_ok("nft", &["-f", file.to_str().context("UTF-8 path")?])?;
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

/// The Markdown table.
pub fn table(rows: &[Row]) -> String {
    let base = rows.first().map_or(1.0, |r| stats(&r.mirror_ns).0);
    let mut t = String::from(
        "| deny prefixes | mirror-xdp attach | nftables set load | mirror-xdp receiver CPU ns/packet (median) | min | max | vs 10 | nftables receiver CPU ns/packet (median) | min | max | mirror-xdp drops per core-second | nftables drops per core-second | mirror-xdp vs nftables |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let (m, mmin, mmax) = stats(&r.mirror_ns);
        let (n, nmin, nmax) = stats(&r.nft_ns);
        t.push_str(&format!(
            "| {} | {:.0} ms | {:.0} ms | {m:.0} | {mmin:.0} | {mmax:.0} | {:.2}x | {n:.0} | {nmin:.0} | {nmax:.0} | {:.0} | {:.0} | {:.2}x |\n",
            r.prefixes,
            stats(&r.attach_ms).0,
            r.nft_load_ms,
            m / base.max(1e-9),
            capacity(m),
            capacity(n),
            n / m.max(1e-9),
        ));
    }
    t
}
