//! Debian's xdp-filter (xdp-tools) loaded as a plain XDP program with aya, its port map
//! filled with the bench policy's ports, timed with BPF_PROG_TEST_RUN next to the enforcer.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{PerCpuArray, PerCpuValues},
    programs::{TestRun, TestRunOptions, Xdp},
};

/// The variant xdp-filter itself loads for TCP and UDP port rules with `--policy deny`:
/// default drop, a rule hit passes ("dny"); "all" because TCP and UDP together need it.
pub const OBJECT: &str = "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_dny_all.o";

/// `MAP_FLAG_*` of xdp-tools' `common_kern_user.h`: a port matches as a destination of
/// that protocol when its value has both bits.
const MAP_FLAG_DST: u64 = 1 << 1;
const MAP_FLAG_TCP: u64 = 1 << 2;
const MAP_FLAG_UDP: u64 = 1 << 3;

/// The bench policy's open ports, as xdp-filter port rules.
const TCP_PORTS: &[u16] = &[80, 443, 873, 8080, 5000, 9000, 3128];
const TCP_RANGE: std::ops::RangeInclusive<u16> = 30001..=30010;
const UDP_PORTS: &[u16] = &[5140];

pub struct XdpFilter {
    ebpf: Ebpf,
    name: String,
    /// Its maps are pinned by name (libbpf `LIBBPF_PIN_BY_NAME`): a private folder on bpffs
    /// keeps them away from a real xdp-filter's pins; removed on drop.
    pin_dir: PathBuf,
}

impl XdpFilter {
    pub fn load() -> Result<XdpFilter> {
        if !Path::new(OBJECT).exists() {
            bail!("{OBJECT} not found (Debian package xdp-tools not installed)");
        }
        let pin_dir = PathBuf::from(format!(
            "/sys/fs/bpf/mx-bench-xdpfilt-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&pin_dir)
            .with_context(|| format!("creating {}", pin_dir.display()))?;
        let loaded = Self::load_in(&pin_dir);
        if loaded.is_err() {
            let _ = std::fs::remove_dir_all(&pin_dir);
        }
        let (ebpf, name) = loaded?;
        Ok(XdpFilter {
            ebpf,
            name,
            pin_dir,
        })
    }

    fn load_in(pin_dir: &Path) -> Result<(Ebpf, String)> {
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load_file(OBJECT)
            .with_context(|| format!("aya cannot parse or load {OBJECT}"))?;
        let name = ebpf
            .programs()
            .find(|(_, p)| matches!(p, aya::programs::Program::Xdp(_)))
            .map(|(n, _)| n.to_string())
            .with_context(|| format!("no XDP program in {OBJECT}"))?;
        let program: &mut Xdp = ebpf
            .program_mut(&name)
            .and_then(|p| p.try_into().ok())
            .context("xdp-filter program")?;
        program
            .load()
            .with_context(|| format!("loading {name} from {OBJECT}"))?;
        let cpus = aya::util::nr_cpus().map_err(|(m, e)| anyhow::anyhow!("{m}: {e}"))?;
        let mut ports: PerCpuArray<_, u64> = PerCpuArray::try_from(
            ebpf.map_mut("filter_ports")
                .context("no filter_ports map")?,
        )?;
        let mut rules: Vec<(u16, u64)> = Vec::new();
        for port in TCP_PORTS.iter().copied().chain(TCP_RANGE) {
            rules.push((port, MAP_FLAG_DST | MAP_FLAG_TCP));
        }
        for &port in UDP_PORTS {
            rules.push((port, MAP_FLAG_DST | MAP_FLAG_UDP));
        }
        for (port, flags) in rules {
            // The program looks ports up as they are on the wire (network byte order).
            let key = u32::from(port.to_be());
            let old = ports.get(&key, 0)?;
            let values =
                PerCpuValues::try_from(vec![old.first().copied().unwrap_or(0) | flags; cpus])?;
            ports.set(key, values, 0)?;
        }
        Ok((ebpf, name))
    }

    /// Average nanoseconds per run over `repeat` runs on `frame`, and the verdict.
    pub fn time(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, u64)> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(&self.name)
            .and_then(|p| p.try_into().ok())
            .context("xdp-filter program")?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat;
        let result = program.test_run(opts)?;
        Ok((result.return_value, result.duration.as_nanos() as u64))
    }
}

impl Drop for XdpFilter {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.pin_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("warning: removing {}: {e}", self.pin_dir.display());
        }
    }
}
