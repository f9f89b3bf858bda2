//! `mirror-xdp trace`: a line per matching packet as the enforcer judges it.

use std::io::Write;
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{Interest, unix::AsyncFd};
use tokio::signal::unix::{SignalKind, signal};

use super::Failure;
use mirror_xdp::observe::explain::Target;
use mirror_xdp::observe::trace::{self, DEFAULT_RATE, Interfaces, TraceError, Tracer};
use mirror_xdp::state::Paths;

/// Print a line for each packet the attached enforcer judges that matches (time,
/// interface, verdict, reason, step of the verdict order, source, destination), from the
/// kernel, until Ctrl-C or --count lines. At most --rate lines a second per CPU; the
/// matching packets over it are counted and reported at the end. Costs nothing while no
/// trace runs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only packets from this prefix or address.
    #[arg(long, value_name = "CIDR", value_parser = parse_source)]
    pub source: Option<IpNet>,
    /// Only packets to this port (PORT/tcp, PORT/udp) or of this IP protocol (vrrp, 47;
    /// icmp with --source).
    #[arg(long, value_name = "PORT/PROTO", value_parser = Target::parse)]
    pub port: Option<Target>,
    /// Stop after N lines.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Lines a second per CPU at most.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RATE)]
    pub rate: u64,
}

fn parse_source(text: &str) -> Result<IpNet, String> {
    mirror_xdp::policy::parse_prefix(text)
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    let fail = |e: TraceError| match e {
        TraceError::Input(_) => Failure::invalid(e),
        _ => Failure::operational(e),
    };
    // A closed output (`| head`) must end the trace through a failed write, which switches
    // the kernel's trace off, not kill it (main lets SIGPIPE end other commands quietly).
    // SAFETY: setting a signal disposition before the runtime starts any thread.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let filter = trace::filter(args.source, args.port, args.rate).map_err(fail)?;
    let mut tracer = Tracer::open(paths, filter).map_err(fail)?;
    tracer.renew().map_err(fail)?;
    eprintln!("trace: on; Ctrl-C stops it");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::operational)?;
    let shown = runtime.block_on(follow(&mut tracer, args.count))?;
    tracer.off().map_err(fail)?;
    let skipped = tracer.skipped().map_err(fail)?;
    eprintln!(
        "trace: {shown} line{}; {skipped} matching packet{} left out (over --rate {} a second per CPU, or the buffer full)",
        if shown == 1 { "" } else { "s" },
        if skipped == 1 { "" } else { "s" },
        args.rate
    );
    Ok(())
}

/// Prints records until a signal or `count` lines; renews the lease every second.
async fn follow(tracer: &mut Tracer, count: Option<u64>) -> Result<u64, Failure> {
    let ring = tracer.ring.take().expect("the ring buffer is taken once");
    // SAFETY: the ring buffer owns its map descriptor, which stays open as long as it does.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(Failure::operational)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Failure::operational)?;
    let mut term = signal(SignalKind::terminate()).map_err(Failure::operational)?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut interfaces = Interfaces::default();
    let mut out = std::io::stdout().lock();
    let mut shown = 0u64;
    loop {
        tokio::select! {
            ready = fd.readable_mut() => {
                let mut guard = ready.map_err(Failure::operational)?;
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    let Some(event) = trace::decode(&item) else { continue };
                    let line = trace::line(&event, interfaces.name(event.ifindex));
                    // A closed pipe (`| head`) ends the trace like Ctrl-C.
                    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                        return Ok(shown);
                    }
                    shown += 1;
                    if count.is_some_and(|n| shown >= n) {
                        return Ok(shown);
                    }
                }
                guard.clear_ready();
            }
            _ = tick.tick() => tracer.renew().map_err(Failure::operational)?,
            _ = int.recv() => return Ok(shown),
            _ = term.recv() => return Ok(shown),
        }
    }
}
