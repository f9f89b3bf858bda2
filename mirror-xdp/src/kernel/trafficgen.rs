//! A traffic generator with no extra tool: the `flood_tx` XDP program (eBPF bin
//! `trafficgen`) run by BPF_PROG_TEST_RUN in live-frames mode sends a template frame, with
//! its source address, port and TCP sequence randomised per packet, out of an interface.
//!
//! Frames leave the interface as if it had received and XDP_TX'ed them, so they reach a
//! veth peer only if that runs native XDP or has GRO on. The interface is looked up in the
//! calling thread's network namespace: call [`TrafficGen::send`] from a thread that joined
//! the sender's namespace (setns).
//!
//! Test support: compiled with the `test-support` feature only.

use std::time::{Duration, Instant};

use aya::{
    Ebpf,
    maps::Array,
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp},
};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/trafficgen"));

const PROGRAM: &str = "flood_tx";
const SETTINGS: &str = "tg_settings";
const TEMPLATE: &str = "tg_template";
/// Header lengths the program writes back over each frame (see `configure`).
const RESTORED: [usize; 4] = [42, 54, 62, 74];
/// Frames per live-frames batch: a NAPI budget, a quarter of the veth peer's 256-slot ring,
/// so a batch fits in the ring when the peer's NAPI drains it on this CPU after each batch.
/// (When that NAPI is busy on another CPU, the ring can still fill: veth then drops and
/// counts `xdp_xmit_errors`.)
const BATCH: u32 = 64;
/// Each live-frames syscall costs about 20 ms of setup and teardown (measured on 6.18)
/// whatever its size, so frames go in chunks: at full speed each chunk lasts about
/// `FULL_SPEED_CHUNK` (the time limit is checked between chunks, so it may be overrun by
/// that much); with a rate, one chunk per `TICK` (the flood comes in 100 ms bursts).
const FULL_SPEED_CHUNK: Duration = Duration::from_millis(250);
const FIRST_CHUNK: u64 = 1 << 16;
const MAX_CHUNK: u64 = 1 << 22;
const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum TrafficGenError {
    #[error("this binary was built without its eBPF programs (MIRROR_XDP_SKIP_EBPF)")]
    NoObject,
    #[error("loading the traffic generator failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the traffic generator program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("the traffic generator settings: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("{0} is missing from the traffic generator object")]
    Missing(&'static str),
    #[error("unusable template frame: {0}")]
    Template(&'static str),
    #[error("no interface {0} in this thread's network namespace")]
    NoInterface(String),
}

/// What changes from one packet to the next.
#[derive(Clone, Copy, Debug, Default)]
pub struct Randomise {
    /// Low bits of the source address (IPv6: of its last 32 bits) drawn at random, 0-32;
    /// the template's address gives the rest, so 22 bits spread over a /10.
    pub src_bits: u32,
    /// A random source port in 1024-65535.
    pub sport: bool,
    /// A random TCP sequence number.
    pub seq: bool,
}

/// One bounded flood.
#[derive(Clone, Copy, Debug)]
pub struct Flood<'a> {
    /// Ethernet + IPv4 (IHL 5) or IPv6 (no extension headers) + TCP or UDP, checksums valid.
    pub template: &'a [u8],
    /// The interface to send from, in the calling thread's namespace.
    pub ifindex: u32,
    /// Frames to send at most.
    pub count: u64,
    /// The flood stops after this long even if frames are left.
    pub time_limit: Duration,
    /// Frames per second; `None` sends as fast as the CPU allows.
    pub rate_pps: Option<u64>,
    pub randomise: Randomise,
}

/// What a flood did.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub frames: u64,
    pub elapsed: Duration,
}

impl Sent {
    pub fn pps(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The loaded generator program and its settings map.
pub struct TrafficGen {
    ebpf: Ebpf,
}

impl TrafficGen {
    pub fn load() -> Result<TrafficGen, TrafficGenError> {
        if OBJECT.is_empty() {
            return Err(TrafficGenError::NoObject);
        }
        let mut ebpf = Ebpf::load(OBJECT)?;
        program(&mut ebpf)?.load()?;
        Ok(TrafficGen { ebpf })
    }

    /// Sends `flood.template` out of `flood.ifindex` until `count` frames went or the time
    /// limit passed. Each frame is one run of the program, so exactly that many leave,
    /// unless the receiving side's queue overflows (see `BATCH`).
    pub fn send(&mut self, flood: &Flood) -> Result<Sent, TrafficGenError> {
        let headers = check_template(flood.template)?;
        self.configure(flood.randomise, flood.template, headers)?;
        let ctx = xdp_md(flood.template.len(), flood.ifindex);
        let mut chunk = match flood.rate_pps {
            Some(rate) => (rate * TICK.as_millis() as u64 / 1000).clamp(1, MAX_CHUNK),
            None => FIRST_CHUNK,
        };
        let program = program(&mut self.ebpf)?;
        let started = Instant::now();
        let mut sent = 0;
        while sent < flood.count && started.elapsed() < flood.time_limit {
            let n = chunk.min(flood.count - sent);
            let call = Instant::now();
            let mut opts = TestRunOptions::new();
            opts.data_in = Some(flood.template);
            opts.ctx_in = Some(&ctx);
            opts.repeat = n as u32;
            opts.attrs = TestRunAttrs::new().xdp_live_frames(BATCH);
            program.test_run(opts)?;
            sent += n;
            match flood.rate_pps {
                Some(rate) => {
                    let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                None => {
                    let pps = n as f64 / call.elapsed().as_secs_f64().max(1e-6);
                    chunk = ((pps * FULL_SPEED_CHUNK.as_secs_f64()) as u64)
                        .clamp(FIRST_CHUNK, MAX_CHUNK);
                }
            }
        }
        Ok(Sent {
            frames: sent,
            elapsed: started.elapsed(),
        })
    }

    /// The randomisation, and the template's `headers` bytes, which each frame starts from
    /// again: a receiver may have rewritten the page in place and sent it back (a SYN
    /// cookie answer does). Headers of other lengths than [`RESTORED`] are not written back.
    fn configure(
        &mut self,
        r: Randomise,
        template: &[u8],
        headers: usize,
    ) -> Result<(), TrafficGenError> {
        let restored = if RESTORED.contains(&headers) {
            headers
        } else {
            0
        };
        let mut copy = [0u8; 74];
        copy[..restored].copy_from_slice(&template[..restored]);
        let map = self
            .ebpf
            .map_mut(TEMPLATE)
            .ok_or(TrafficGenError::Missing(TEMPLATE))?;
        Array::<_, [u8; 74]>::try_from(map)?.set(0, copy, 0)?;
        let map = self
            .ebpf
            .map_mut(SETTINGS)
            .ok_or(TrafficGenError::Missing(SETTINGS))?;
        let mut settings: Array<_, u32> = Array::try_from(map)?;
        settings.set(0, r.src_bits.min(32), 0)?;
        settings.set(1, u32::from(r.sport) | u32::from(r.seq) << 1, 0)?;
        settings.set(2, restored as u32, 0)?;
        Ok(())
    }
}

fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp, TrafficGenError> {
    let program = ebpf
        .program_mut(PROGRAM)
        .ok_or(TrafficGenError::Missing(PROGRAM))?;
    Ok(program.try_into()?)
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> Result<u32, TrafficGenError> {
    nix::net::if_::if_nametoindex(name).map_err(|_| TrafficGenError::NoInterface(name.into()))
}

/// `struct xdp_md` for the test run: no metadata, the whole frame as data, received on
/// `ifindex` queue 0 (so XDP_TX leaves through that interface).
fn xdp_md(len: usize, ifindex: u32) -> [u8; 24] {
    let fields = [0, len as u32, 0, ifindex, 0, 0];
    let mut out = [0u8; 24];
    for (chunk, v) in out.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    out
}

/// The layouts `flood_tx` rewrites at fixed offsets; anything else it would abort on.
/// Returns the length of the headers (Ethernet to the end of the TCP or UDP header).
fn check_template(f: &[u8]) -> Result<usize, TrafficGenError> {
    let bad = |why| Err(TrafficGenError::Template(why));
    if f.len() < 14 || f.len() > 1514 {
        return bad("length outside 14-1514 bytes");
    }
    let (proto, l4) = match [f[12], f[13]] {
        [0x08, 0x00] if f.len() >= 34 && f[14] == 0x45 => (f[23], 34),
        [0x08, 0x00] => return bad("IPv4 with options or truncated"),
        [0x86, 0xdd] if f.len() >= 54 => (f[20], 54),
        _ => return bad("neither IPv4 nor IPv6 after the Ethernet header"),
    };
    let l4_len = match proto {
        6 if f.len() >= l4 + 13 => usize::from(f[l4 + 12] >> 4) * 4,
        6 => 20,
        17 => 8,
        _ => return bad("neither TCP nor UDP"),
    };
    if l4_len < 8 || f.len() < l4 + l4_len {
        return bad("L4 header truncated");
    }
    Ok(l4 + l4_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked() {
        let mut v4 = vec![0u8; 54];
        v4[12..14].copy_from_slice(&[0x08, 0x00]);
        v4[14] = 0x45;
        v4[23] = 6;
        v4[46] = 5 << 4;
        assert_eq!(check_template(&v4).unwrap(), 54);
        assert!(check_template(&v4[..50]).is_err());
        v4[14] = 0x46;
        assert!(check_template(&v4).is_err());
        let mut v6 = vec![0u8; 62];
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        v6[20] = 17;
        assert_eq!(check_template(&v6).unwrap(), 62);
        v6[20] = 58;
        assert!(check_template(&v6).is_err());
    }

    #[test]
    fn xdp_md_spans_the_frame() {
        let md = xdp_md(60, 7);
        assert_eq!(&md[4..8], &60u32.to_ne_bytes());
        assert_eq!(&md[12..16], &7u32.to_ne_bytes());
    }
}
