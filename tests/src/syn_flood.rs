//! A spoofed SYN flood (hping3) far over the global SYN budget while an untrusted client
//! connects over and over, on any testbed (veth in tests/syn_cookies.rs, virtio-net in
//! tests/virtio_net.rs). With cookies the client gets in (the flood is answered with cookie
//! SYN-ACKs from XDP); without, it gets in only when its SYN finds the budget unspent.
//! Every flood is bounded in packets and seconds.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mirror_xdp::observe::testrun::Baseline;

use crate::cli::{attach_policy, port_counts, reason, run_ok, stats};
use crate::cpu::pin_to_cpu;
use crate::netns::{ChildGuard, Netns};
use crate::probe::{ProbeResult, tcp_connect};
use crate::servers::{TcpListenerSet, banner};
use crate::testbed::*;
use crate::wait::wait_until;

const PORT: u16 = 8080;
/// Sequential connects from the untrusted client over IPv4, then over IPv6 (the flood is
/// IPv4, but the budget is for all SYNs: IPv6 ones over it get IPv6 cookies).
pub const ATTEMPTS_V4: u32 = 100;
pub const ATTEMPTS_V6: u32 = 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// hping3: 40,000 SYNs, one every 200 us (about 5,000 a second, 100 times the budget), from
/// random sources; `timeout` ends it after 15 s whatever happens.
pub(crate) const FLOOD: Flood = Flood {
    syns: "40000",
    gap: "u200",
    secs: "15",
};

/// How many SYNs hping3 sends, how far apart, and the time after which it is ended.
pub(crate) struct Flood {
    pub syns: &'static str,
    pub gap: &'static str,
    pub secs: &'static str,
}
/// The client starts once the server has judged this many of the flood's SYNs over the
/// budget (a cookie or a drop): the flood is under way.
pub(crate) const FLOOD_UNDER_WAY: u64 = 100;
/// The flood and the client share one CPU, so that the server's XDP judges both there, in
/// one CPU's share of the global budget (25 a second of the 50 on a two-CPU machine).
pub(crate) const CPU: usize = 0;

fn policy(cookies: bool) -> String {
    policy_for(PORT, cookies)
}

pub(crate) fn policy_for(port: u16, cookies: bool) -> String {
    format!(
        r#"
version = 1
[[ports]]
proto = "tcp"
ports = [{port}]
[limits]
global_syn_rate = 50
syn_cookies = {cookies}
"#
    )
}

/// The connects of one address family: how many completed (banner read) of those tried.
#[derive(Default)]
pub struct Connects {
    ok: u32,
    tried: u32,
    failures: Vec<String>,
}

impl Connects {
    pub fn rate(&self) -> f64 {
        f64::from(self.ok) / f64::from(self.tried.max(1))
    }
}

impl std::fmt::Display for Connects {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{}/{} connects completed during the flood ({:.1}%)",
            self.ok,
            self.tried,
            self.rate() * 100.0
        )?;
        if !self.failures.is_empty() {
            write!(f, " [failures: {}]", self.failures.join("; "))?;
        }
        Ok(())
    }
}

pub struct Outcome {
    pub v4: Connects,
    pub v6: Connects,
    pub cookies: u64,
    pub syn_flood: u64,
}

/// Attaches the policy, floods, connects from the untrusted client while the flood lasts
/// (at most [`ATTEMPTS_V4`] + [`ATTEMPTS_V6`] times), checks the counters, and the sysctl's
/// round trip through attach and detach.
pub fn flood_and_connect(bed: &Testbed, cookies: bool) -> Outcome {
    pin_to_cpu(CPU);
    let _listeners = TcpListenerSet::start(&bed.server, &[PORT]).expect("listener");
    // Spoofed sources are routable on the Internet: the kernel answers the SYNs that reach
    // it (the budget's and the keepalive's), and so keeps its cookie check alive.
    let gateway = CLIENT_V4.to_string();
    bed.server
        .run_ok("ip", &["route", "add", "default", "via", &gateway])
        .expect("default route");
    let sysctl_before = syncookies(&bed.server);
    let timestamps_before = timestamps(&bed.server);
    attach_policy(bed, &policy(cookies));
    let expected = if cookies { "2" } else { sysctl_before.as_str() };
    assert_eq!(
        syncookies(&bed.server),
        expected,
        "tcp_syncookies after attach"
    );
    // Cookies carry options in timestamps without per-connection offsets.
    let expected = if cookies { "2" } else { "1" };
    assert_eq!(timestamps_before, "1", "a namespace starts with offsets on");
    assert_eq!(
        timestamps(&bed.server),
        expected,
        "tcp_timestamps after attach"
    );

    let mut flood = start_flood(bed, PORT, &FLOOD);
    wait_until(
        Duration::from_secs(5),
        "the SYN flood going over the budget",
        || {
            let s = stats(bed);
            assert!(
                flood.try_wait().expect("hping3").is_none(),
                "hping3 ended early"
            );
            reason(&s, "syn_cookie", "packets") + reason(&s, "syn_flood", "drop_packets")
                >= FLOOD_UNDER_WAY
        },
    );
    let started = Instant::now();
    let mut results = Vec::new();
    for (src, dst, attempts) in [
        (
            IpAddr::from(CLIENT_V4),
            IpAddr::from(SERVER_V4),
            ATTEMPTS_V4,
        ),
        (CLIENT_V6.into(), SERVER_V6.into(), ATTEMPTS_V6),
    ] {
        let mut c = Connects::default();
        while c.tried < attempts && flood.try_wait().expect("hping3").is_none() {
            c.tried += 1;
            match tcp_connect(
                &bed.client,
                src,
                SocketAddr::new(dst, PORT),
                CONNECT_TIMEOUT,
            ) {
                Ok(r) if r == ProbeResult::Open(banner(PORT)) => c.ok += 1,
                Ok(r) => c.failures.push(format!("{r:?}")),
                // A reset after the handshake: the kernel refused the cookie.
                Err(e) => c.failures.push(format!("{e:#}")),
            }
        }
        results.push(c);
    }
    let flooding = flood.try_wait().expect("hping3").is_none();
    eprintln!(
        "connects took {:.1} s; the flood was {} then",
        started.elapsed().as_secs_f64(),
        if flooding { "still running" } else { "over" }
    );
    drop(flood);

    let s = stats(bed);
    let cookies_sent = reason(&s, "syn_cookie", "packets");
    let syn_flood = reason(&s, "syn_flood", "drop_packets");
    // Answered SYNs count as passed on their port; the drops there are the syn_flood ones.
    let (pass, drop) = port_counts(&s, "tcp", PORT).expect("port 8080 listed");
    assert!(
        pass >= cookies_sent,
        "port {PORT}: {pass} passed, {cookies_sent} cookies"
    );
    assert_eq!(drop, syn_flood, "port {PORT} drops against syn_flood drops");

    run_ok(bed, &["detach"]);
    assert_eq!(
        syncookies(&bed.server),
        sysctl_before,
        "detach restores tcp_syncookies"
    );
    assert_eq!(
        timestamps(&bed.server),
        timestamps_before,
        "detach restores tcp_timestamps"
    );
    let v6 = results.pop().expect("IPv6 connects");
    let v4 = results.pop().expect("IPv4 connects");
    Outcome {
        v4,
        v6,
        cookies: cookies_sent,
        syn_flood,
    }
}

/// hping3 from the client namespace at the server's `port`, spoofed random sources, on
/// [`CPU`].
pub(crate) fn start_flood(bed: &Testbed, port: u16, flood: &Flood) -> ChildGuard {
    let port = port.to_string();
    let target = SERVER_V4.to_string();
    let cpu = CPU.to_string();
    bed.client
        .spawn(
            "timeout",
            &[
                flood.secs,
                "taskset",
                "-c",
                &cpu,
                "hping3",
                "-q",
                "-S",
                "-p",
                &port,
                "--rand-source",
                "-i",
                flood.gap,
                "-c",
                flood.syns,
                &target,
            ],
        )
        .expect("start hping3 (installed by `cargo xtask setup`)")
}

/// `net.ipv4.tcp_syncookies` in a namespace.
fn syncookies(ns: &Netns) -> String {
    ns.sysctl("net.ipv4.tcp_syncookies")
}

/// `net.ipv4.tcp_timestamps` in a namespace.
fn timestamps(ns: &Netns) -> String {
    ns.sysctl("net.ipv4.tcp_timestamps")
}

impl Outcome {
    /// With cookies on: every connect of both families tried while the flood lasted, 95%
    /// of them complete, and the flood was answered with cookies.
    #[track_caller]
    pub fn assert_clients_got_in(&self) {
        for (connects, attempts) in [(&self.v4, ATTEMPTS_V4), (&self.v6, ATTEMPTS_V6)] {
            assert_eq!(
                connects.tried, attempts,
                "the flood ended before the client was done"
            );
            assert!(connects.rate() >= 0.95, "only {connects}");
        }
        assert!(self.cookies > 0, "no SYN was answered with a cookie");
    }
}

/// `bare_pass` on the client's veth: a veth hands its peer's XDP_TX frames (the SYN-ACKs)
/// on promptly only if it runs XDP itself, as a real NIC always would.
pub fn pass_program(client: &Netns) -> Baseline {
    client.enter(|| {
        let mut program = Baseline::load("bare_pass").expect("load bare_pass");
        program
            .attach_native(CLIENT_IF)
            .expect("attach bare_pass to the client veth");
        program
    })
}
