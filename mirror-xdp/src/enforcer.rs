//! Attaching and detaching the enforcer: load, fill the maps, attach XDP and egress to each
//! interface, pin everything so protection outlives this process, and undo it all again.

use std::path::{Path, PathBuf};

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
    links::{FdLink, PinnedLink},
    tc::TcAttachOptions,
};

use crate::{
    compile::{CompileError, compile, possible_cpus},
    fault,
    maps::{Maps, MapsError},
    object::{self, LoadError},
    pending,
    policy::Policy,
    state::{InterfaceRecord, Paths, PolicyRecord, PortRecord, Record, StateError},
};

/// How to attach XDP: `auto` tries native (driver) mode and falls back to skb (generic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    Auto,
    Native,
    Skb,
}

#[derive(Debug, thiserror::Error)]
pub enum EnforcerError {
    #[error("an enforcer is already attached (to {interfaces}); run `mirror-xdp detach` first")]
    AlreadyAttached { interfaces: String },
    #[error("nothing is attached (no state in {0})")]
    NotAttached(PathBuf),
    #[error("interface {iface} is not attached (attached: {attached})")]
    UnknownInterface { iface: String, attached: String },
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error(
        "attaching XDP to {iface} in {mode} mode failed: {}{hint}",
        chain(source),
        hint = if *mode == "native" { " (try --xdp-mode skb)" } else { "" }
    )]
    AttachXdp {
        iface: String,
        mode: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error(
        "attaching the egress program to {iface} failed (needs TCX, kernel 6.6+): {}",
        chain(source)
    )]
    AttachEgress {
        iface: String,
        source: aya::programs::ProgramError,
    },
    #[error("pinning {path} failed: {message}")]
    Pin { path: PathBuf, message: String },
    #[error("bpffs folder {path}: {source}")]
    Bpffs {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Lock(#[from] crate::statedir::LockError),
    #[error(transparent)]
    Live(#[from] crate::live::LiveError),
    #[error(transparent)]
    LivePorts(#[from] crate::live_ports::LivePortsError),
    #[error(transparent)]
    Syncookies(#[from] crate::syncookies::SyncookiesError),
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    /// An earlier command died half-way, and this one may not finish it.
    #[error("{0}")]
    Unfinished(String),
    #[error("swapping the program on {iface}: {message}")]
    Swap { iface: String, message: String },
}

/// Map sizes chosen at attach time.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Entries of the per-source limiter LRU table.
    pub limiter_entries: u32,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            limiter_entries: mirror_xdp_common::capacity::LIMITS,
        }
    }
}

/// Attaches a policy to interfaces. Everything is pinned under `paths.bpffs`; on any failure
/// what was done so far is undone, so the host is left as it was. Crash-safe: each interface
/// is linked only once the maps are complete and enabled, so it enforces nothing or the whole
/// policy; the pending record lets the next command roll an unfinished attach back
/// ([`crate::recover`]).
pub fn attach(
    paths: &Paths,
    ifaces: &[String],
    policy: &Policy,
    mode: AttachMode,
    sizes: Sizes,
    say: &mut dyn FnMut(&str),
) -> Result<Record, EnforcerError> {
    // Held to the end: a `port` or `source` command waits until the maps hold what it
    // would change, and recovery sees no attach at work.
    let live_lock = crate::statedir::lock(&paths.state_dir)?;
    crate::recover::recover(paths, &live_lock, crate::recover::Level::RollBack, say)?;
    if let Some(record) = Record::load(paths)? {
        return Err(EnforcerError::AlreadyAttached {
            interfaces: record.interface_names(),
        });
    }
    for iface in ifaces {
        if !interface_exists(iface) {
            return Err(EnforcerError::NoSuchInterface(iface.clone()));
        }
    }
    // Live `port` rules outlive attachments: compiled with the policy's.
    let live_ports = crate::live_ports::LivePorts::load(paths)?;
    let merged;
    let policy = if live_ports.rules.is_empty() {
        policy
    } else {
        merged = policy.clone().with_live_ports(&live_ports)?;
        &merged
    };
    let image = compile(policy, possible_cpus())?;
    let generation_dir = paths.generation_dir(1);
    create_pin_dir(&generation_dir)?;
    let mut rollback = Rollback {
        paths,
        armed: true,
        syncookies_before: None,
    };

    let mut ebpf = object::load(
        Some((paths, &generation_dir)),
        object::MapSizes::new(sizes, &image),
    )?;
    fault::point("attach:maps-pinned");
    // Held until the programs are loaded: they refer to the maps by these descriptors.
    let mut maps = Maps::from_ebpf(&mut ebpf)?;
    let mut config = maps.write_fresh(&image)?;
    // Live `source` entries outlive attachments: in force before the program judges a packet.
    config.flags |= crate::live::restore_locked(paths, &mut maps)?;
    maps.enable(&config)?;
    fault::point("attach:maps-filled");
    let prog_id = object::load_and_pin_programs(&mut ebpf, &generation_dir)?;
    drop(maps);
    fault::point("attach:programs-pinned");

    let syncookies = Path::new(crate::syncookies::SYSCTL);
    let mut record = Record {
        mode: policy.settings.mode.name().to_string(),
        interfaces: Vec::new(),
        policy: PolicyRecord {
            path: absolute(&policy.path),
            generation: 1,
        },
        ports: policy
            .rules
            .iter()
            .flat_map(|r| r.ports.iter().map(|p| PortRecord::new(r.proto, *p)))
            .collect(),
        tcp_syncookies_before: match policy.limits.syn_cookies {
            true => Some(crate::syncookies::read(syncookies)?),
            false => None,
        },
        limiter_entries: sizes.limiter_entries,
        reloads: Default::default(),
    };
    // Before anything outside the pin folder changes: what to undo if this process dies.
    pending::write(paths, &record, &policy.allow, &policy.deny)?;
    fault::point("attach:pending-written");
    if policy.limits.syn_cookies {
        // Before the first cookie goes out: the kernel must accept the ACKs that answer it.
        let before = crate::syncookies::enable(syncookies)?;
        say(&format!(
            "syn_cookies: net.ipv4.tcp_syncookies set to {} in this network namespace              (was {before}; detach restores it)",
            crate::syncookies::REQUIRED
        ));
        rollback.syncookies_before = Some(before);
        fault::point("attach:sysctl-set");
    }

    // Egress first: an interface records the connections it opens before XDP judges the
    // replies. XDP last, with every map complete: from its link on the policy is in force.
    {
        let egress: &mut SchedClassifier =
            object::program_mut(&mut ebpf, mirror_xdp_common::program_name::EGRESS)?;
        for iface in ifaces {
            let link = attach_egress(egress, iface, paths)?;
            pin_link(link, &paths.egress_link_pin(iface))?;
            fault::point("attach:egress-linked");
        }
    }
    {
        let xdp: &mut Xdp = object::program_mut(&mut ebpf, mirror_xdp_common::program_name::XDP)?;
        for iface in ifaces {
            let (link, mode_name) = attach_xdp(xdp, iface, mode, say)?;
            pin_link(link, &paths.xdp_link_pin(iface))?;
            record.interfaces.push(InterfaceRecord {
                name: iface.clone(),
                xdp_mode: mode_name.to_string(),
                prog_id,
            });
            fault::point("attach:xdp-linked");
        }
    }

    pending::write(paths, &record, &policy.allow, &policy.deny)?;
    pending::commit(paths)?;
    fault::point("attach:state-written");
    rollback.armed = false;
    // In force: now the first reload's spare (see `crate::spare`; not needed to succeed).
    if let Err(e) = crate::spare::prepare(paths, 2, sizes, &image) {
        say(&format!(
            "note: no spare generation for the next reload: {e}"
        ));
    }
    Ok(record)
}

fn attach_egress(
    egress: &mut SchedClassifier,
    iface: &str,
    paths: &Paths,
) -> Result<FdLink, EnforcerError> {
    let fail = |source| EnforcerError::AttachEgress {
        iface: iface.to_string(),
        source,
    };
    let id = egress
        .attach_with_options(
            iface,
            TcAttachType::Egress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(fail)?;
    let link = egress.take_link(id).map_err(fail)?;
    FdLink::try_from(link).map_err(|e| EnforcerError::Pin {
        path: paths.egress_link_pin(iface),
        message: e.to_string(),
    })
}

fn attach_xdp(
    xdp: &mut Xdp,
    iface: &str,
    mode: AttachMode,
    say: &mut dyn FnMut(&str),
) -> Result<(FdLink, &'static str), EnforcerError> {
    let try_mode = |xdp: &mut Xdp, xdp_mode, name: &'static str| {
        let fail = |source| EnforcerError::AttachXdp {
            iface: iface.to_string(),
            mode: name,
            source,
        };
        let id = xdp.attach(iface, xdp_mode).map_err(fail)?;
        let link = xdp.take_link(id).map_err(fail)?;
        FdLink::try_from(link)
            .map(|l| (l, name))
            .map_err(|e| EnforcerError::Pin {
                path: PathBuf::from(iface),
                message: format!("the XDP attachment is not a bpf_link ({e})"),
            })
    };
    match mode {
        AttachMode::Native => try_mode(xdp, XdpMode::Driver, "native"),
        AttachMode::Skb => try_mode(xdp, XdpMode::Skb, "skb"),
        AttachMode::Auto => match try_mode(xdp, XdpMode::Driver, "native") {
            Ok(found) => Ok(found),
            Err(e) => {
                say(&format!(
                    "{e}\nfalling back to skb (generic) mode on {iface}"
                ));
                try_mode(xdp, XdpMode::Skb, "skb")
            }
        },
    }
}

fn pin_link(link: FdLink, path: &Path) -> Result<(), EnforcerError> {
    link.pin(path).map(drop).map_err(|e| EnforcerError::Pin {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Detaches from one interface, or from all. When no interface is left, the maps, pins and
/// state file go too. Crash-safe: XDP links go first, so an interface enforces the policy or
/// nothing; an interface whose XDP link is gone counts as detached, and the next command
/// finishes the rest ([`crate::recover`]). Returns the interfaces detached; empty when only
/// what an unfinished command left was cleaned up.
pub fn detach(
    paths: &Paths,
    iface: Option<&str>,
    say: &mut dyn FnMut(&str),
) -> Result<Vec<String>, EnforcerError> {
    let lock = crate::statedir::lock(&paths.state_dir)?;
    let recovered = crate::recover::recover(paths, &lock, crate::recover::Level::RollBack, say)?;
    let Some(mut record) = Record::load(paths)? else {
        return match recovered {
            true => Ok(Vec::new()),
            false => Err(EnforcerError::NotAttached(paths.state_dir.clone())),
        };
    };
    let targets: Vec<String> = match iface {
        Some(name) => {
            if !record.interfaces.iter().any(|i| i.name == name) {
                return Err(EnforcerError::UnknownInterface {
                    iface: name.to_string(),
                    attached: record.interface_names(),
                });
            }
            vec![name.to_string()]
        }
        None => record.interfaces.iter().map(|i| i.name.clone()).collect(),
    };
    for name in &targets {
        unpin_link(&paths.xdp_link_pin(name));
        fault::point("detach:xdp-unpinned");
    }
    for name in &targets {
        unpin_link(&paths.egress_link_pin(name));
        fault::point("detach:egress-unpinned");
    }
    record.interfaces.retain(|i| !targets.contains(&i.name));
    if record.interfaces.is_empty() {
        finish_detach(paths, &record)?;
    } else {
        record.save(paths)?;
    }
    Ok(targets)
}

/// Unpinning a link drops the last reference to it: the kernel detaches the program. A pin
/// that is already gone (the interface vanished) is fine.
pub(crate) fn unpin_link(pin: &Path) {
    if let Ok(link) = PinnedLink::from_pin(pin) {
        let _ = link.unpin();
    }
}

/// The end of a detach from every interface: the pins, the sysctl, the state file (last:
/// while it is there, the next command knows there is something to finish).
pub(crate) fn finish_detach(paths: &Paths, record: &Record) -> Result<(), EnforcerError> {
    remove_pins(paths);
    fault::point("detach:pins-removed");
    if let Some(before) = &record.tcp_syncookies_before {
        crate::syncookies::restore(Path::new(crate::syncookies::SYSCTL), before)?;
        fault::point("detach:sysctl-restored");
    }
    pending::discard(paths);
    Record::remove(paths)?;
    Ok(())
}

/// The link pins in the pin folder, XDP links first.
pub(crate) fn link_pins(paths: &Paths) -> Vec<PathBuf> {
    let mut pins: Vec<PathBuf> = entries(&paths.bpffs)
        .into_iter()
        .filter(|p| file_name(p).starts_with("link_"))
        .collect();
    pins.sort_by_key(|p| !file_name(p).starts_with("link_xdp_"));
    pins
}

/// Whether the pin folder holds anything of ours.
pub(crate) fn has_pins(paths: &Paths) -> bool {
    entries(&paths.bpffs).iter().any(|p| is_ours(p))
}

/// The folders of generations, complete (`gen-N`) and half-built (`gen-N-new`).
pub(crate) fn generation_dirs(paths: &Paths) -> Vec<PathBuf> {
    entries(&paths.bpffs)
        .into_iter()
        .filter(|p| file_name(p).starts_with("gen-") && p.is_dir())
        .collect()
}

/// Removes every pin of ours in the bpffs folder (links first, so no program runs with maps
/// half gone), and the folder if it is then empty. Pins of other versions (`mx_*_vN`) too.
pub(crate) fn remove_pins(paths: &Paths) {
    for link in link_pins(paths) {
        unpin_link(&link);
    }
    for dir in generation_dirs(paths)
        .into_iter()
        .chain(crate::spare::dirs(paths))
    {
        remove_dir_pins(&dir);
    }
    for path in entries(&paths.bpffs) {
        if is_ours(&path) && path.is_file() {
            let _ = std::fs::remove_file(path);
        }
    }
    let _ = std::fs::remove_dir(&paths.bpffs);
}

/// Removes one generation's pins (maps and programs) and its folder. The kernel frees them
/// once no link runs them.
pub(crate) fn remove_dir_pins(dir: &Path) {
    for path in entries(dir) {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_dir(dir);
}

/// Removes one generation's pins.
pub(crate) fn remove_generation(paths: &Paths, generation: u64) {
    remove_dir_pins(&paths.generation_dir(generation));
}

fn is_ours(path: &Path) -> bool {
    let name = file_name(path);
    ["link_", "mx_", "gen-", "spare-"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Creates a folder for pins (a generation's, a spare's), private to root.
pub(crate) fn create_pin_dir(dir: &Path) -> Result<(), EnforcerError> {
    crate::state::create_private_dir(dir).map_err(|source| EnforcerError::Bpffs {
        path: dir.to_path_buf(),
        source,
    })
}

/// The paths in a folder, sorted; none if it cannot be read.
pub(crate) fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Undoes a half-done attach when dropped armed.
struct Rollback<'a> {
    paths: &'a Paths,
    armed: bool,
    /// `net.ipv4.tcp_syncookies` before this attach changed it.
    syncookies_before: Option<String>,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if self.armed {
            remove_pins(self.paths);
            pending::discard(self.paths);
            if let Some(before) = &self.syncookies_before {
                let _ = crate::syncookies::restore(Path::new(crate::syncookies::SYSCTL), before);
            }
        }
    }
}

/// An error with its causes, for messages that must say what the kernel answered.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Asks the kernel of this network namespace (/sys may show another one's interfaces).
fn interface_exists(iface: &str) -> bool {
    let Ok(name) = std::ffi::CString::new(iface) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated string; the call only reads it.
    unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
