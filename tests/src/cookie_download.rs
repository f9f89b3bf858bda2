//! A download over a connection made from a SYN cookie, next to the same download over a
//! connection made normally: nginx serves 64 MiB over a veth path with 50 ms of delay
//! (netem on the server's side), curl fetches it. The cookie connection is made during a
//! spoofed SYN flood far over the global budget, so the client's SYN gets a cookie from XDP;
//! its SYN-ACK skips the server's qdisc and its delay, which tells such a connection from
//! one the kernel answered (a connect under 0.8 of the delay, which a kernel answer cannot
//! be). Without window scaling in the cookie a download could not pass 64 KiB per round
//! trip.

use std::time::Duration;

use crate::cli::{attach_policy, reason, run_ok, stats};
use crate::cpu::pin_to_cpu;
use crate::servers::Nginx;
use crate::syn_flood::{CPU, FLOOD_UNDER_WAY, Flood, pass_program, policy_for, start_flood};
use crate::testbed::*;
use crate::wait::wait_until;

const FILE: &str = "big.iso";
const FILE_BYTES: usize = 64 << 20;
/// One way, server to client: the round trip of every connection.
pub const DELAY_MS: u64 = 50;
/// Downloads of each kind; the median counts.
const DOWNLOADS: usize = 3;
/// Tries to get a cookie connection before giving up (a SYN within the budget is answered
/// by the kernel instead).
const COOKIE_TRIES: usize = 10;
/// 500 SYNs a second, ten times the budget: enough to spend it, little enough not to take
/// the CPU from the downloads it is compared with. Ended after 120 s whatever happens.
const FLOOD: Flood = Flood {
    syns: "60000",
    gap: "u2000",
    secs: "120",
};

/// One download: seconds to connect, bytes a second.
#[derive(Clone, Copy, Debug)]
pub struct Download {
    pub connect_s: f64,
    pub bytes_per_s: f64,
}

pub struct Speeds {
    pub normal: Vec<Download>,
    pub cookie: Vec<Download>,
    /// Cookies the kernel refused (`TcpExtSyncookiesFailed`) during the cookie downloads.
    pub cookies_failed: u64,
}

impl Speeds {
    pub fn median(downloads: &[Download]) -> f64 {
        let mut speeds: Vec<f64> = downloads.iter().map(|d| d.bytes_per_s).collect();
        speeds.sort_by(f64::total_cmp);
        speeds[speeds.len() / 2]
    }

    /// The cookie connections' median speed over the normal ones'.
    pub fn ratio(&self) -> f64 {
        Speeds::median(&self.cookie) / Speeds::median(&self.normal)
    }
}

/// [`download_speeds`] on a testbed of its own, whose client end runs a bare XDP_PASS
/// (frames injected by XDP_TX reach a veth peer promptly only then).
pub fn measure() -> Speeds {
    let bed = Testbed::new().expect("testbed");
    let _peer_xdp = pass_program(&bed.client);
    download_speeds(&bed)
}

/// Downloads normally (nothing attached), then attaches a policy with cookies and
/// downloads over cookie connections while a flood lasts.
pub fn download_speeds(bed: &Testbed) -> Speeds {
    // The flood, curl and so the server's XDP for both run on one CPU: one CPU's share
    // of the global budget, which the flood spends.
    pin_to_cpu(CPU);
    let _nginx =
        Nginx::serving(&bed.server, &[(FILE, &vec![0x5a; FILE_BYTES])]).expect("start nginx");
    let delay = format!("{DELAY_MS}ms");
    // A queue long enough for a full window at this delay: netem's default of 1,000
    // packets would drop a fast download's segments.
    bed.server
        .run_ok(
            "tc",
            &[
                "qdisc", "add", "dev", SERVER_IF, "root", "netem", "delay", &delay, "limit",
                "100000",
            ],
        )
        .expect("netem on the server's veth");
    // The flood's spoofed sources get the kernel's answers to the budget's SYNs.
    bed.server
        .run_ok(
            "ip",
            &["route", "add", "default", "via", &CLIENT_V4.to_string()],
        )
        .expect("default route");

    let normal: Vec<Download> = (0..DOWNLOADS).map(|_| download(bed)).collect();
    for d in &normal {
        assert!(
            d.connect_s >= DELAY_MS as f64 / 1000.0 * 0.9,
            "a normal connect took {:.3} s: is the delay in place?",
            d.connect_s
        );
    }

    attach_policy(bed, &policy_for(80, true));
    let mut flood = start_flood(bed, 80, &FLOOD);
    wait_until(
        Duration::from_secs(5),
        "the SYN flood going over the budget",
        || {
            assert!(
                flood.try_wait().expect("hping3").is_none(),
                "hping3 ended early"
            );
            reason(&stats(bed), "syn_cookie", "packets") >= FLOOD_UNDER_WAY
        },
    );
    let failed_before = bed
        .server
        .tcp_ext("SyncookiesFailed")
        .expect("TcpExt SyncookiesFailed");
    let mut cookie = Vec::new();
    for _ in 0..COOKIE_TRIES {
        if cookie.len() == DOWNLOADS {
            break;
        }
        assert!(
            flood.try_wait().expect("hping3").is_none(),
            "the flood ended first"
        );
        let d = download(bed);
        // The XDP SYN-ACK skipped the delay: a cookie connection.
        if d.connect_s < DELAY_MS as f64 / 1000.0 * 0.8 {
            cookie.push(d);
        }
    }
    let cookies_failed = bed
        .server
        .tcp_ext("SyncookiesFailed")
        .expect("TcpExt SyncookiesFailed")
        - failed_before;
    drop(flood);
    run_ok(bed, &["detach"]);
    assert_eq!(
        cookie.len(),
        DOWNLOADS,
        "only {} of {COOKIE_TRIES} connects got a cookie",
        cookie.len()
    );
    Speeds {
        normal,
        cookie,
        cookies_failed,
    }
}

/// curl from the client: the whole file, its connect time and speed.
fn download(bed: &Testbed) -> Download {
    let url = format!("http://{SERVER_V4}/{FILE}");
    let out = bed
        .client
        .run_ok(
            "curl",
            &[
                "-sS",
                "--max-time",
                "60",
                "-o",
                "/dev/null",
                "-w",
                "%{time_connect} %{speed_download} %{size_download}",
                &url,
            ],
        )
        .expect("curl the file");
    let text = String::from_utf8_lossy(&out.stdout);
    let numbers: Vec<f64> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap_or_else(|_| panic!("curl wrote {text:?}")))
        .collect();
    assert_eq!(numbers[2] as usize, FILE_BYTES, "a whole download");
    Download {
        connect_s: numbers[0],
        bytes_per_s: numbers[1],
    }
}
