//! Running the XDP program on frames with BPF_PROG_TEST_RUN, without attaching it anywhere:
//! the differential test, the benchmarks and `audit` judge frames this way. The egress
//! program runs the same way on the frames this host would send.

use aya::{
    Ebpf,
    programs::{SchedClassifier, TestRun, TestRunOptions, TestRunResult, Xdp},
};

use crate::{
    compile::{compile, possible_cpus},
    kernel::maps::Maps,
    lifecycle::{
        LifecycleError,
        object::{self, Sizes},
    },
    policy::Policy,
};

/// XDP return codes.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

/// The egress program's return codes: the packet goes on (TCX_NEXT, -1), or is dropped.
pub const TC_NEXT: u32 = u32::MAX;
pub const TC_DROP: u32 = 2;

/// Bare `XDP_DROP` / `XDP_PASS` programs, the yardstick of the benchmarks (test support).
#[cfg(feature = "test-support")]
static BASELINE: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/baseline"));

/// A bare program that only returns `XDP_DROP` (`bare_drop`) or `XDP_PASS` (`bare_pass`).
#[cfg(feature = "test-support")]
pub struct Baseline {
    ebpf: Ebpf,
    name: &'static str,
}

#[cfg(feature = "test-support")]
impl Baseline {
    pub fn load(name: &'static str) -> Result<Baseline, LifecycleError> {
        if BASELINE.is_empty() {
            return Err(LifecycleError::NoObject);
        }
        let mut ebpf = Ebpf::load(BASELINE).map_err(LifecycleError::from)?;
        let program: &mut Xdp = object::program_mut(&mut ebpf, name)?;
        program
            .load()
            .map_err(|source| LifecycleError::Program { name, source })?;
        Ok(Baseline { ebpf, name })
    }

    fn program(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(self.name)
            .and_then(|p| p.try_into().ok())
            .expect("loaded in Baseline::load")
    }

    /// Attaches the program in native mode to `iface` of the calling thread's network
    /// namespace, until this is dropped. Tests put `bare_pass` on the client end of a veth:
    /// a veth delivers its peer's XDP_TX frames promptly only if it runs XDP itself.
    pub fn attach_native(&mut self, iface: &str) -> Result<(), LifecycleError> {
        self.program()
            .attach(iface, aya::programs::XdpMode::Driver)
            .map(drop)
            .map_err(|source| LifecycleError::AttachXdp {
                iface: iface.to_string(),
                mode: "native",
                source: Box::new(source),
                why: None,
            })
    }

    /// Average nanoseconds per run over `repeat` runs on `frame`.
    pub fn time(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, u64), TestRunError> {
        timed_run(self.program(), frame, repeat)
    }
}

fn timed_run<P>(program: &P, frame: &[u8], repeat: u32) -> Result<(u32, u64), TestRunError>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.repeat = repeat;
    let result = program.test_run(opts)?;
    Ok((result.return_value, result.duration.as_nanos() as u64))
}

/// A private, unpinned copy of the enforcer loaded with one policy.
pub struct TestProgram {
    ebpf: Ebpf,
    pub maps: Maps,
    /// The compiled config (the reference model needs its limit parameters).
    pub config: mirror_xdp_common::Config,
}

#[derive(Debug, thiserror::Error)]
#[error("BPF_PROG_TEST_RUN failed: {0}")]
pub struct TestRunError(#[from] aya::programs::ProgramError);

impl TestProgram {
    pub fn load(policy: &Policy) -> Result<TestProgram, LifecycleError> {
        let image = compile(policy, possible_cpus())?;
        let mut ebpf = object::load(None, object::MapSizes::new(Sizes::default(), &image))?;
        let mut maps = Maps::from_ebpf(&mut ebpf)?;
        let config = maps.write_fresh(&image)?;
        maps.enable(&config)?;
        object::xdp_program(&mut ebpf)?;
        Ok(TestProgram {
            ebpf,
            maps,
            config: image.config,
        })
    }

    /// Makes the program read the time from the config instead of the kernel clock, so a
    /// test decides what "now" is (0 returns to the kernel clock).
    pub fn set_clock(&mut self, now_ns: u64) -> Result<(), LifecycleError> {
        let mut config = self.maps.config()?;
        config.clock_override_ns = now_ns;
        Ok(self.maps.set_config(&config)?)
    }

    fn program(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(mirror_xdp_common::program_name::XDP)
            .and_then(|p| p.try_into().ok())
            .expect("loaded in TestProgram::load")
    }

    /// The loaded program, for tests that run it from several threads at once.
    pub fn xdp(&mut self) -> &Xdp {
        self.program()
    }

    /// Runs the program once on `frame` and returns its XDP action.
    pub fn run(&mut self, frame: &[u8]) -> Result<u32, TestRunError> {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        Ok(self.program().test_run(opts)?.return_value)
    }

    /// Runs the program once on `frame`; returns its XDP action and the frame as the
    /// program left it (a SYN cookie answer rewrites and shortens it).
    pub fn run_output(&mut self, frame: &[u8]) -> Result<(u32, Vec<u8>), TestRunError> {
        // Room for the frame and the headroom the kernel may copy out with it.
        let mut out = vec![0u8; frame.len() + 512];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.data_out = Some(&mut out);
        let result = self.program().test_run(opts)?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Runs the program `repeat` times on `frame`; returns the action and the kernel's
    /// average nanoseconds per run.
    pub fn time(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, u64), TestRunError> {
        timed_run(self.program(), frame, repeat)
    }

    /// Loads the egress program (the verifier runs), for [`TestProgram::time_egress`]. It
    /// shares this copy's maps: the flows it records are the XDP program's return traffic.
    pub fn load_egress(&mut self) -> Result<(), LifecycleError> {
        object::egress_program(&mut self.ebpf).map(drop)
    }

    /// Runs the egress program (see [`TestProgram::load_egress`]) `repeat` times on
    /// `frame`, a packet this host sends; returns [`TC_NEXT`] or [`TC_DROP`] and the
    /// kernel's average nanoseconds per run. Frames longer than a page less the skb's room
    /// are refused: a test run's skb is linear.
    pub fn time_egress(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, u64), TestRunError> {
        let program: &SchedClassifier = self
            .ebpf
            .program(mirror_xdp_common::program_name::EGRESS)
            .and_then(|p| p.try_into().ok())
            .ok_or(aya::programs::ProgramError::NotLoaded)?;
        timed_run(program, frame, repeat)
    }
}
