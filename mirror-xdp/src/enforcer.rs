//! Attaching and detaching the enforcer: load, fill the maps, attach XDP and egress to each
//! interface, pin everything so protection outlives this process, and undo it all again.

use std::path::{Path, PathBuf};

use aya::programs::{
    LinkOrder, TcAttachType, XdpMode,
    links::{FdLink, PinnedLink},
    tc::TcAttachOptions,
};

use crate::{
    compile::{CompileError, compile, possible_cpus},
    maps::{Maps, MapsError},
    object::{self, LoadError},
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
    Live(#[from] crate::live::LiveError),
    #[error(transparent)]
    LivePorts(#[from] crate::live_ports::LivePortsError),
    #[error(transparent)]
    Syncookies(#[from] crate::syncookies::SyncookiesError),
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
/// what was done so far is undone, so the host is left as it was.
pub fn attach(
    paths: &Paths,
    ifaces: &[String],
    policy: &Policy,
    mode: AttachMode,
    sizes: Sizes,
    say: &mut dyn FnMut(&str),
) -> Result<Record, EnforcerError> {
    if let Some(record) = Record::load(paths)? {
        let linked = record
            .interfaces
            .iter()
            .any(|i| paths.xdp_link_pin(&i.name).exists());
        if linked {
            return Err(EnforcerError::AlreadyAttached {
                interfaces: names(&record),
            });
        }
        // The pins are gone (removed by hand, or bpffs remounted): the record is stale.
        say(&format!(
            "note: discarding the record of an enforcer on {} whose pins are gone",
            names(&record)
        ));
        Record::remove(paths)?;
    }
    for iface in ifaces {
        if !interface_exists(iface) {
            return Err(EnforcerError::NoSuchInterface(iface.clone()));
        }
    }
    // Held to the end: a `port` or `source` command waits until the maps hold what it
    // would change.
    let _live_lock = crate::live::lock(paths)?;
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
    // Leftovers of an attach that died half-way hold no links: start clean.
    remove_pins(paths);
    let generation_dir = paths.generation_dir(1);
    crate::state::create_private_dir(&generation_dir).map_err(|source| EnforcerError::Bpffs {
        path: generation_dir,
        source,
    })?;
    let mut rollback = Rollback {
        paths,
        armed: true,
        syncookies_before: None,
    };

    let mut ebpf = object::load(Some((paths, 1)), object::MapSizes::new(sizes, &image))?;
    // Held until the programs are loaded: they refer to the maps by these descriptors.
    let mut maps = Maps::from_ebpf(&mut ebpf)?;
    let mut config = maps.write_fresh(&image)?;
    // Live `source` entries outlive attachments: in force before the program judges a packet.
    config.flags |= crate::live::restore_locked(paths, &mut maps)?;
    crate::live::save_policy_sources(paths, &policy.allow, &policy.deny)?;
    maps.enable(&config)?;
    if policy.limits.syn_cookies {
        // Before the first cookie goes out: the kernel must accept the ACKs that answer it.
        let before = crate::syncookies::enable(Path::new(crate::syncookies::SYSCTL))?;
        say(&format!(
            "syn_cookies: net.ipv4.tcp_syncookies set to {} in this network namespace \
             (was {before}; detach restores it)",
            crate::syncookies::REQUIRED
        ));
        rollback.syncookies_before = Some(before);
    }

    let mut interfaces = Vec::new();
    {
        let xdp = object::xdp_program(&mut ebpf)?;
        let prog_id = xdp.info().map(|i| i.id()).unwrap_or(0);
        for iface in ifaces {
            let (link, mode_name) = attach_xdp(xdp, iface, mode, say)?;
            pin_link(link, &paths.xdp_link_pin(iface))?;
            interfaces.push(InterfaceRecord {
                name: iface.clone(),
                xdp_mode: mode_name.to_string(),
                prog_id,
            });
        }
    }
    {
        let egress = object::egress_program(&mut ebpf)?;
        for iface in ifaces {
            let id = egress
                .attach_with_options(
                    iface,
                    TcAttachType::Egress,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .map_err(|source| EnforcerError::AttachEgress {
                    iface: iface.clone(),
                    source,
                })?;
            let link = egress
                .take_link(id)
                .map_err(|source| EnforcerError::AttachEgress {
                    iface: iface.clone(),
                    source,
                })?;
            let link = FdLink::try_from(link).map_err(|e| EnforcerError::Pin {
                path: paths.egress_link_pin(iface),
                message: e.to_string(),
            })?;
            pin_link(link, &paths.egress_link_pin(iface))?;
        }
    }

    let record = Record {
        mode: policy.settings.mode.name().to_string(),
        interfaces,
        policy: PolicyRecord {
            path: absolute(&policy.path),
            generation: 1,
        },
        ports: policy
            .rules
            .iter()
            .flat_map(|r| r.ports.iter().map(|p| PortRecord::new(r.proto, *p)))
            .collect(),
        tcp_syncookies_before: rollback.syncookies_before.clone(),
        limiter_entries: sizes.limiter_entries,
        reloads: Default::default(),
    };
    record.save(paths)?;
    rollback.armed = false;
    drop(maps);
    Ok(record)
}

fn attach_xdp(
    xdp: &mut aya::programs::Xdp,
    iface: &str,
    mode: AttachMode,
    say: &mut dyn FnMut(&str),
) -> Result<(FdLink, &'static str), EnforcerError> {
    let try_mode = |xdp: &mut aya::programs::Xdp, xdp_mode, name: &'static str| {
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
/// state file go too.
pub fn detach(paths: &Paths, iface: Option<&str>) -> Result<Vec<String>, EnforcerError> {
    let mut record =
        Record::load(paths)?.ok_or_else(|| EnforcerError::NotAttached(paths.state_dir.clone()))?;
    let targets: Vec<String> = match iface {
        Some(name) => {
            if !record.interfaces.iter().any(|i| i.name == name) {
                return Err(EnforcerError::UnknownInterface {
                    iface: name.to_string(),
                    attached: names(&record),
                });
            }
            vec![name.to_string()]
        }
        None => record.interfaces.iter().map(|i| i.name.clone()).collect(),
    };
    for name in &targets {
        for pin in [paths.xdp_link_pin(name), paths.egress_link_pin(name)] {
            // Unpinning drops the last reference: the kernel detaches the program. A pin that
            // is already gone (the interface vanished) is fine.
            if let Ok(link) = PinnedLink::from_pin(&pin) {
                let _ = link.unpin();
            }
        }
    }
    record.interfaces.retain(|i| !targets.contains(&i.name));
    if record.interfaces.is_empty() {
        remove_pins(paths);
        Record::remove(paths)?;
        if let Some(before) = &record.tcp_syncookies_before {
            crate::syncookies::restore(Path::new(crate::syncookies::SYSCTL), before)?;
        }
    } else {
        record.save(paths)?;
    }
    Ok(targets)
}

/// Removes every pin of ours in the bpffs folder, and the folder if it is then empty.
fn remove_pins(paths: &Paths) {
    for generation in paths.pinned_generations() {
        remove_generation(paths, generation);
    }
    if let Ok(entries) = std::fs::read_dir(&paths.bpffs) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = name.starts_with("link_")
                || mirror_xdp_common::map_name::ALL.contains(&name.as_ref());
            if ours {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(&paths.bpffs);
}

/// Removes one generation's policy-map pins (and its folder).
pub(crate) fn remove_generation(paths: &Paths, generation: u64) {
    let dir = paths.generation_dir(generation);
    for name in mirror_xdp_common::map_name::PER_GENERATION {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let _ = std::fs::remove_dir(&dir);
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

fn names(record: &Record) -> String {
    record
        .interfaces
        .iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
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
