//! Per-packet cost as the deny list grows (10, 10k, 100k, 1M prefixes) while the source
//! address changes from packet to packet, and the time to load each list.

use std::net::Ipv4Addr;
use std::time::Instant;

use anyhow::Result;
use mirror_xdp::{observe::testrun::TestProgram, policy::Policy};
use mirror_xdp_tests::frames::{Frame, Ipv4, L4};

pub const SIZES: [usize; 4] = [10, 10_000, 100_000, 1_000_000];
const FRAMES: usize = 20_000;
const ROUNDS: usize = 3;

/// One row of the scaling table.
pub struct Row {
    pub prefixes: usize,
    pub load_ms: u128,
    pub median_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
}

/// A small deterministic PRNG: the lists and frames are the same in every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `size` prefixes, 60% single hosts and 40% /24s, anywhere in the IPv4 space: a typical
/// block list, the same in every run.
pub fn deny_list(size: usize) -> Vec<(u32, u8)> {
    let mut rng = Rng(0x5EED ^ size as u64);
    (0..size)
        .map(|_| {
            let addr = rng.next() as u32;
            if rng.next() % 10 < 6 {
                (addr, 32)
            } else {
                (addr & 0xFFFF_FF00, 24)
            }
        })
        .collect()
}

/// The list as a set file: one prefix a line.
pub fn deny_list_text(list: &[(u32, u8)]) -> String {
    list.iter()
        .map(|(a, len)| format!("{}/{len}\n", Ipv4Addr::from(*a)))
        .collect()
}

pub fn run() -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let mut programs = Vec::new();
    let mut lists = Vec::new();
    for &size in &SIZES {
        let list = deny_list(size);
        let file = dir.path().join(format!("deny-{size}.txt"));
        std::fs::write(&file, deny_list_text(&list))?;
        let policy_text = format!(
            "version = 1\n[[ports]]\nproto = \"tcp\"\nports = [80]\n[sources]\ndeny = [{{ file = \"{}\" }}]\n",
            file.display()
        );
        let started = Instant::now();
        let policy = Policy::parse(&policy_text, &dir.path().join("policy.toml"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let program = TestProgram::load(&policy)?;
        let load_ms = started.elapsed().as_millis();
        programs.push((size, load_ms, program));
        lists.push(list);
    }

    // The same frames for every size: half from listed prefixes of the largest list, half
    // from anywhere, so both the hit and the miss paths are in the mix.
    let mut rng = Rng(0xF00D);
    let largest = lists.last().expect("sizes");
    let frames: Vec<Vec<u8>> = (0..FRAMES)
        .map(|_| {
            let src = if rng.next().is_multiple_of(2) {
                let (addr, len) = largest[(rng.next() % largest.len() as u64) as usize];
                addr | (rng.next() as u32 & (u32::MAX >> len.min(31) >> (len / 32)))
            } else {
                rng.next() as u32
            };
            Frame::ipv4(Ipv4::new(
                Ipv4Addr::from(src),
                Ipv4Addr::new(198, 51, 100, 1),
                L4::tcp(40000, 80, 0x02),
            ))
            .pad_to(60)
            .build()
        })
        .collect();

    let mut samples: Vec<Vec<u64>> = vec![Vec::new(); programs.len()];
    for _ in 0..ROUNDS {
        for (i, (_, _, program)) in programs.iter_mut().enumerate() {
            let mut total = 0;
            for frame in &frames {
                total += program.time(frame, 1)?.1;
            }
            samples[i].push(total / FRAMES as u64);
        }
    }
    Ok(programs
        .iter()
        .zip(samples)
        .map(|((prefixes, load_ms, _), mut s)| {
            s.sort_unstable();
            Row {
                prefixes: *prefixes,
                load_ms: *load_ms,
                median_ns: s[s.len() / 2],
                min_ns: s[0],
                max_ns: s[s.len() - 1],
            }
        })
        .collect())
}

/// The table in Markdown, with each size's cost relative to the smallest list.
pub fn table(rows: &[Row]) -> String {
    let base = rows.first().map_or(1, |r| r.median_ns.max(1));
    let mut out = String::from(
        "| deny prefixes | load (compile + load + fill) | ns/packet (median) | min | max | vs 10 |\n|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} ms | {} | {} | {} | {:.2}x |\n",
            r.prefixes,
            r.load_ms,
            r.median_ns,
            r.min_ns,
            r.max_ns,
            r.median_ns as f64 / base as f64
        ));
    }
    out
}
