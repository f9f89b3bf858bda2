//! A 64 MiB download over a connection made from a SYN cookie next to the same download
//! over a connection made normally, over 50 ms of netem delay (the measurement is the VM
//! test's, tests/src/cookie_download.rs). The host's kernel has no sch_netem, so
//! `cargo xtask bench` runs this part in a Debian guest (`--cookie-download-only --save
//! FILE`) and hands the saved figures to the host's run (`--cookie-download FILE`).

use std::path::Path;

use anyhow::{Context, Result};
use mirror_xdp_tests::cookie_download::{DELAY_MS, Download, Speeds, measure};
use serde_json::{Value, json};

/// The figures of one run and the kernel they were measured on.
pub struct Measured {
    pub kernel: String,
    pub speeds: Speeds,
}

/// Runs first in its process, before any other thread starts.
pub fn run() -> Result<Measured> {
    // The test library's CLI runs find the binary through this, as the other parts of the
    // bench do: next to the bench.
    if std::env::var_os("MIRROR_XDP_BIN").is_none() {
        let bin = std::env::current_exe()?.with_file_name("mirror-xdp");
        // SAFETY: no other thread runs yet to read the environment meanwhile.
        unsafe { std::env::set_var("MIRROR_XDP_BIN", bin) };
    }
    let speeds = measure();
    Ok(Measured {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")?
            .trim()
            .to_string(),
        speeds,
    })
}

pub fn save(m: &Measured, path: &Path) -> Result<()> {
    let list = |d: &[Download]| -> Vec<Value> {
        d.iter()
            .map(|d| json!({"connect_s": d.connect_s, "bytes_per_s": d.bytes_per_s}))
            .collect()
    };
    let doc = json!({
        "kernel": m.kernel,
        "normal": list(&m.speeds.normal),
        "cookie": list(&m.speeds.cookie),
        "cookies_failed": m.speeds.cookies_failed,
    });
    std::fs::write(path, doc.to_string()).with_context(|| format!("writing {}", path.display()))
}

pub fn load(path: &Path) -> Result<Measured> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let what = |key: &str| format!("{}: no {key}", path.display());
    let list = |key: &str| -> Result<Vec<Download>> {
        let items = doc[key].as_array().with_context(|| what(key))?;
        items
            .iter()
            .map(|d| {
                Ok(Download {
                    connect_s: d["connect_s"].as_f64().with_context(|| what("connect_s"))?,
                    bytes_per_s: d["bytes_per_s"]
                        .as_f64()
                        .with_context(|| what("bytes_per_s"))?,
                })
            })
            .collect()
    };
    let speeds = Speeds {
        normal: list("normal")?,
        cookie: list("cookie")?,
        cookies_failed: doc["cookies_failed"]
            .as_u64()
            .with_context(|| what("cookies_failed"))?,
    };
    if speeds.normal.is_empty() || speeds.cookie.is_empty() {
        anyhow::bail!("{}: no downloads", path.display());
    }
    Ok(Measured {
        kernel: doc["kernel"]
            .as_str()
            .with_context(|| what("kernel"))?
            .into(),
        speeds,
    })
}

pub fn table(m: &Measured) -> String {
    let row = |name: &str, d: &[Download]| {
        let mb: Vec<f64> = d.iter().map(|d| d.bytes_per_s / 1e6).collect();
        let mut connect: Vec<f64> = d.iter().map(|d| d.connect_s * 1e3).collect();
        connect.sort_by(f64::total_cmp);
        format!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            Speeds::median(d) / 1e6,
            mb.iter().copied().fold(f64::INFINITY, f64::min),
            mb.iter().copied().fold(0.0, f64::max),
            connect[connect.len() / 2]
        )
    };
    format!(
        "Kernel {kernel}, {n} downloads of each kind.\n\n\
         | connection | MB/s (median) | min | max | connect ms (median) |\n\
         |---|---:|---:|---:|---:|\n{normal}{cookie}\n\
         A connection made from a cookie downloads at {ratio:.2}x the speed of one made \
         normally; the kernel refused {failed} cookies (`TcpExtSyncookiesFailed`).\n",
        kernel = m.kernel,
        n = m.speeds.cookie.len(),
        normal = row("made normally (the kernel's SYN-ACK)", &m.speeds.normal),
        cookie = row(
            "made from an XDP cookie during a SYN flood",
            &m.speeds.cookie
        ),
        ratio = m.speeds.ratio(),
        failed = m.speeds.cookies_failed,
    )
}

/// What the section measures, for the report.
pub fn description() -> String {
    format!(
        "nginx serves a 64 MiB file over a veth pair with {DELAY_MS} ms of netem delay on the \
         server's side; curl fetches it three times over connections made normally, then, with \
         `syn_cookies = true` and a spoofed SYN flood (hping3, 500 SYNs a second) over the \
         global budget, three times over connections made from a cookie that XDP sent (told \
         apart by a connect shorter than the delay: the XDP SYN-ACK skips the server's qdisc). \
         The host's kernel has no sch_netem, so `cargo xtask bench` runs this part in a Debian \
         guest (software emulation: the speeds are the guest's, the ratio is what counts)."
    )
}
