//! A spoofed SYN flood (the live-frames generator, random sources) to an open port, answered
//! with SYN cookies by mirror-xdp from XDP, next to the kernel's own SYN cookies
//! (`tcp_syncookies = 2`, the same listener, a bare XDP_PASS on the veth): SYNs answered per
//! receiving core-second, and a legitimate client's connects while each flood lasts.
//!
//! The flood comes over the testbed's first veth pair, whose client end drops the answers
//! in XDP (a bare XDP_DROP): the receiving core also runs the client end's receive work,
//! and the stack's handling of a million SYN-ACKs to addresses it does not have would be
//! most of it. The legitimate client connects over the second pair, where nothing else
//! queues, from a thread on the receiving core, whose share of the global budget the flood
//! spends.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mirror_xdp::{kernel::trafficgen::Randomise, observe::testrun::Baseline};
use mirror_xdp_tests::{
    cpu::pin_to_cpu,
    flood::{send_frames, syn_template},
    netns::{Netns, is_root},
    probe::{ProbeResult, tcp_connect},
    servers::{TcpListenerSet, banner},
    testbed::{
        CLIENT_IF, CLIENT_IF2, CLIENT_V4, CLIENT2_V4, SERVER_IF, SERVER_IF2, SERVER2_V4, Testbed,
    },
};

use crate::end_to_end::{ReceiverThread, attach_baseline, on_cpu0, stats, xdp_counters};

pub const FRAMES: u64 = 1_000_000;
/// Paced: a rate the kernel's own cookies cannot keep up with on one core here, well within
/// what XDP answers, so the table shows what each spends on the same flood.
pub const RATE_PPS: u64 = 250_000;
pub const REPETITIONS: usize = 3;
const PORT: u16 = 80;
/// Source addresses: the client's with its low 24 bits drawn at random.
const SRC_BITS: u32 = 24;
const FLOOD_LIMIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_GAP: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, PartialEq)]
pub enum Answerer {
    MirrorXdp,
    Kernel,
}

impl Answerer {
    pub fn name(self) -> &'static str {
        match self {
            Answerer::MirrorXdp => "mirror-xdp (XDP_TX cookies, native)",
            Answerer::Kernel => "the kernel's SYN cookies (tcp_syncookies = 2, bare XDP_PASS)",
        }
    }
}

/// One answerer's samples, one per repetition.
pub struct Row {
    pub answerer: Answerer,
    /// SYNs answered per second of the receiving core's CPU time.
    pub answered_per_core_s: Vec<f64>,
    pub answered: Vec<u64>,
    pub received: Vec<u64>,
    /// The legitimate client's connects: completed, tried, connect times (ms).
    pub connects_ok: u32,
    pub connects_tried: u32,
    pub connect_ms: Vec<f64>,
    /// How each failed connect failed, for the report.
    pub failures: Vec<String>,
}

pub fn run() -> Result<Vec<Row>> {
    if !is_root() {
        bail!("needs root");
    }
    let bin = std::env::current_exe()?.with_file_name("mirror-xdp");
    let bed = Testbed::new()?;
    bed.add_second_link()?;
    let _listener = TcpListenerSet::start(&bed.server, &[PORT])?;
    // The kernel answers spoofed sources through the client.
    bed.server.run_ok(
        "ip",
        &["route", "add", "default", "via", &CLIENT_V4.to_string()],
    )?;
    // A veth hands on its peer's XDP_TX frames only if it runs XDP itself; the flood's
    // answers end there.
    let mut flood_sink = Baseline::load("bare_drop")?;
    bed.client.enter(|| flood_sink.attach_native(CLIENT_IF))?;
    let mut client_pass = Baseline::load("bare_pass")?;
    bed.client.enter(|| client_pass.attach_native(CLIENT_IF2))?;
    let policy = bed.work_dir().join("cookies.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\n[[ports]]\nproto = \"tcp\"\nports = [{PORT}]\n[limits]\n\
             global_syn_rate = 1000\nsyn_cookies = true\n"
        ),
    )?;
    let template = syn_template(&bed, CLIENT_V4.into(), PORT)?;
    let mut rows: Vec<Row> = [Answerer::MirrorXdp, Answerer::Kernel]
        .into_iter()
        .map(|answerer| Row {
            answerer,
            answered_per_core_s: Vec::new(),
            answered: Vec::new(),
            received: Vec::new(),
            connects_ok: 0,
            connects_tried: 0,
            failures: Vec::new(),
            connect_ms: Vec::new(),
        })
        .collect();
    for rep in 0..REPETITIONS {
        for row in &mut rows {
            sample(&bed, &bin, &policy, &template, row)
                .with_context(|| format!("{} (repetition {})", row.answerer.name(), rep + 1))?;
        }
    }
    Ok(rows)
}

/// One flood against one answerer, set up and torn down around it.
fn sample(
    bed: &Testbed,
    bin: &std::path::Path,
    policy: &std::path::Path,
    template: &[u8],
    row: &mut Row,
) -> Result<()> {
    let sysctl = "net.ipv4.tcp_syncookies";
    let syncookies_before = bed.server.sysctl(sysctl);
    let mut xdp = None;
    match row.answerer {
        Answerer::MirrorXdp => {
            let policy = policy.to_str().context("UTF-8 policy path")?;
            let out = bed.cli(
                bin,
                &[
                    "attach", "--iface", SERVER_IF, "--iface", SERVER_IF2, "--policy", policy,
                ],
            );
            if !out.status.success() {
                bail!("attach: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
        }
        Answerer::Kernel => {
            xdp = Some(attach_baseline(bed, "bare_pass")?);
            bed.server
                .run_ok("sysctl", &["-qw", &format!("{sysctl}=2")])?;
        }
    }
    let result = measure(bed, template, row);
    match row.answerer {
        Answerer::MirrorXdp => {
            let out = bed.cli(bin, &["detach"]);
            if !out.status.success() {
                eprintln!(
                    "warning: detach: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Answerer::Kernel => {
            bed.server
                .run_ok("sysctl", &["-qw", &format!("{sysctl}={syncookies_before}")])?;
        }
    }
    drop(xdp);
    result
}

fn measure(bed: &Testbed, template: &[u8], row: &mut Row) -> Result<()> {
    let receiver = ReceiverThread::start(bed)?;
    let answered_before = answered(bed, row.answerer)?;
    let received_before = xdp_counters(&bed.server)?.0;
    let ticks_before = receiver.ticks();
    let flooding = AtomicBool::new(true);
    let randomise = Randomise {
        src_bits: SRC_BITS,
        sport: true,
        seq: true,
    };
    let (sent, connects) = std::thread::scope(|s| {
        let client = s.spawn(|| legitimate_client(&bed.client, &flooding));
        let sent = on_cpu0(|| {
            send_frames(
                bed,
                template,
                randomise,
                FRAMES,
                Some(RATE_PPS),
                FLOOD_LIMIT,
            )
        });
        flooding.store(false, Ordering::Relaxed);
        (sent, client.join().expect("the client thread"))
    });
    let sent = sent?;
    // Let the receive side finish what is queued.
    std::thread::sleep(Duration::from_millis(200));
    let ticks = receiver.ticks() - ticks_before;
    receiver.stop(bed);
    let received = xdp_counters(&bed.server)?.0 - received_before;
    let answered = answered(bed, row.answerer)? - answered_before;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let core_s = ticks as f64 / hz;
    if sent.frames < FRAMES {
        eprintln!("note: the generator sent {} of {FRAMES} SYNs", sent.frames);
    }
    row.answered_per_core_s
        .push(answered as f64 / core_s.max(1e-9));
    row.answered.push(answered);
    row.received.push(received);
    row.connects_ok += connects.0;
    row.connects_tried += connects.1;
    row.connect_ms.extend(connects.2);
    row.failures.extend(connects.3);
    Ok(())
}

/// SYNs the answerer answered so far: mirror-xdp's `syn_cookie` counter, or the kernel's
/// `TcpExtSyncookiesSent`.
fn answered(bed: &Testbed, answerer: Answerer) -> Result<u64> {
    match answerer {
        Answerer::MirrorXdp => {
            let bin = std::env::current_exe()?.with_file_name("mirror-xdp");
            let out = bed.cli(&bin, &["stats", "--json"]);
            let doc: serde_json::Value =
                serde_json::from_slice(&out.stdout).with_context(|| {
                    format!("stats --json: {}", String::from_utf8_lossy(&out.stderr))
                })?;
            doc["reasons"]["syn_cookie"]["packets"]
                .as_u64()
                .context("no syn_cookie count in stats --json")
        }
        Answerer::Kernel => bed.server.tcp_ext("SyncookiesSent"),
    }
}

/// Connects to the listener over the second link one after another while `flooding`, on the
/// receiving core: (completed, tried, connect times of the completed ones in ms, how the
/// others failed).
fn legitimate_client(client: &Netns, flooding: &AtomicBool) -> (u32, u32, Vec<f64>, Vec<String>) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    pin_to_cpu(cpus - 1);
    let (mut ok, mut tried, mut times, mut failures) = (0, 0, Vec::new(), Vec::new());
    let server = SocketAddr::new(IpAddr::from(SERVER2_V4), PORT);
    while flooding.load(Ordering::Relaxed) {
        tried += 1;
        let started = Instant::now();
        match tcp_connect(client, CLIENT2_V4.into(), server, CONNECT_TIMEOUT) {
            Ok(ProbeResult::Open(text)) if text == banner(PORT) => {
                ok += 1;
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            Ok(ProbeResult::Open(text)) => failures.push(format!("open, read {text:?}")),
            Ok(ProbeResult::Refused) => failures.push("refused".into()),
            Ok(ProbeResult::Timeout) => {
                failures.push(format!("no answer in {} s", CONNECT_TIMEOUT.as_secs()))
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
        std::thread::sleep(CONNECT_GAP);
    }
    (ok, tried, times, failures)
}

/// The Markdown table, and mirror-xdp's rate as a multiple of the kernel's.
pub fn table(rows: &[Row]) -> String {
    let rate = |a: Answerer| {
        rows.iter()
            .find(|r| r.answerer == a)
            .map(|r| stats(&r.answered_per_core_s).0)
    };
    let mut t = String::from(
        "| answerer | SYNs answered per receiving core-second (median) | min | max | answered / received (last) | legitimate connects completed | connect time ms (median) | max |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let (m, min, max) = stats(&r.answered_per_core_s);
        let (c, _, cmax) = stats(&r.connect_ms);
        t.push_str(&format!(
            "| {} | {m:.0} | {min:.0} | {max:.0} | {} / {} | {} / {} | {c:.1} | {cmax:.1} |\n",
            r.answerer.name(),
            r.answered.last().unwrap_or(&0),
            r.received.last().unwrap_or(&0),
            r.connects_ok,
            r.connects_tried,
        ));
    }
    for r in rows.iter().filter(|r| !r.failures.is_empty()) {
        t.push_str(&format!(
            "\nFailed connects with {}: {}.\n",
            r.answerer.name(),
            r.failures.join("; ")
        ));
    }
    if let (Some(mirror), Some(kernel)) = (rate(Answerer::MirrorXdp), rate(Answerer::Kernel)) {
        t.push_str(&format!(
            "\nmirror-xdp answers {:.1}x the kernel's SYNs per receiving core-second.\n",
            mirror / kernel.max(1e-9)
        ));
    }
    t
}

/// mirror-xdp's rate over the kernel's, and the share of legitimate connects completed
/// under mirror-xdp: the goal's figures.
pub fn figures(rows: &[Row]) -> Option<(f64, f64)> {
    let row = |a: Answerer| rows.iter().find(|r| r.answerer == a);
    let (mirror, kernel) = (row(Answerer::MirrorXdp)?, row(Answerer::Kernel)?);
    let ratio =
        stats(&mirror.answered_per_core_s).0 / stats(&kernel.answered_per_core_s).0.max(1e-9);
    let connects = f64::from(mirror.connects_ok) / f64::from(mirror.connects_tried.max(1));
    Some((ratio, connects))
}
