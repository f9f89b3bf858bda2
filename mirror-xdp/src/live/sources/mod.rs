//! Live source entries (`mirror-xdp source`): the persisted set of CLI allows and denies,
//! kept in `<state_dir>/live-sources.json` so they survive re-attach and restart.
//!
//! The file is the truth; [`LiveSet::apply`] (in [`kernel`]) brings the kernel's tries in
//! line with it. Attach and reload use this store ([`restore_locked`]); the `source`
//! commands on top of it are in [`command`]. Deny expiries are wall-clock Unix seconds here, because the monotonic
//! clock the kernel compares against restarts at boot.

mod bitmaps;
mod fold;
mod input;
mod kernel;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::kernel::maps::{Maps, MapsError};
use crate::state::dir;
use crate::state::{Paths, Record};

pub use fold::fold_expiries;
pub use input::{BadLine, parse_duration, parse_list};
pub use kernel::{Clock, Hits};

pub const LIVE_FILE: &str = "live-sources.json";
pub const POLICY_SOURCES_FILE: &str = "policy-sources.json";
const FORMAT_VERSION: u32 = 1;

/// What an entry does to its sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }
}

/// When a deny entry stops applying. `At` sorts before `Never`, so `max` is "the later".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expiry {
    /// Unix seconds (wall clock).
    At(u64),
    Never,
}

impl Expiry {
    /// Unix seconds, `None` for never (the JSON form).
    pub fn unix(self) -> Option<u64> {
        match self {
            Expiry::At(secs) => Some(secs),
            Expiry::Never => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged ({reason}); it is left in place for inspection")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("live source map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error("{count} live {} entries for IPv{family} exceed the {max} the kernel table holds", action.name())]
    TooMany {
        action: Action,
        family: u8,
        count: usize,
        max: u32,
    },
    #[error(
        "{} bad line{} in {file}; nothing was applied:\n{}",
        lines.len(),
        if lines.len() == 1 { "" } else { "s" },
        lines.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    )]
    BadLines { file: String, lines: Vec<BadLine> },
    #[error(
        "{prefix} is not a live entry{}{}",
        if *in_policy { "; it comes from the policy file, change it there" } else { "" },
        if *crowdsec {
            "; CrowdSec denies it: delete the decision (`cscli decisions delete`), or \
             `source allow` it"
        } else {
            ""
        }
    )]
    NotLive {
        prefix: IpNet,
        in_policy: bool,
        /// A CrowdSec decision denies the prefix (`run`'s bouncer).
        crowdsec: bool,
    },
}

impl LiveError {
    /// Whether the user's input is at fault (exit 2) rather than the system (exit 1).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            LiveError::TooMany { .. } | LiveError::BadLines { .. } | LiveError::NotLive { .. }
        )
    }
}

/// The live entries. A prefix may be both allowed and denied: allow wins in the kernel
/// (trusted is judged before denied).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveSet {
    pub allow: BTreeSet<IpNet>,
    pub deny: BTreeMap<IpNet, Expiry>,
    /// CrowdSec's ban decisions by decision id, which `run`'s bouncer keeps (README,
    /// "CrowdSec"); several decisions may name one prefix. Denies like `deny`.
    pub crowdsec: BTreeMap<i64, (IpNet, Expiry)>,
}

/// How many entries an operation added and how many it changed or removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
}

impl LiveSet {
    /// Denies `nets` until `expires`; an existing deny takes the new expiry.
    pub fn deny(&mut self, nets: &[IpNet], expires: Expiry) -> Change {
        let mut change = Change::default();
        for net in nets {
            match self.deny.insert(*net, expires) {
                None => change.added += 1,
                Some(old) if old != expires => change.updated += 1,
                Some(_) => {}
            }
        }
        change
    }

    pub fn allow(&mut self, nets: &[IpNet]) -> Change {
        let added = nets.iter().filter(|net| self.allow.insert(**net)).count();
        Change {
            added,
            ..Change::default()
        }
    }

    pub fn contains(&self, net: &IpNet) -> bool {
        self.allow.contains(net) || self.deny.contains_key(net)
    }

    /// CrowdSec's prefixes, each with the latest expiry of its decisions.
    pub fn crowdsec_nets(&self) -> BTreeMap<IpNet, Expiry> {
        let mut nets = BTreeMap::new();
        for (net, expires) in self.crowdsec.values() {
            later(&mut nets, *net, *expires);
        }
        nets
    }

    /// Every prefix the kernel denies: the `source` commands' and CrowdSec's, with the later
    /// expiry where both name one.
    pub fn denies(&self) -> BTreeMap<IpNet, Expiry> {
        let mut nets = self.deny.clone();
        for (net, expires) in self.crowdsec.values() {
            later(&mut nets, *net, *expires);
        }
        nets
    }

    /// Removes `nets` from both lists.
    pub fn remove(&mut self, nets: &[IpNet]) -> Change {
        let mut change = Change::default();
        for net in nets {
            let allowed = self.allow.remove(net);
            let denied = self.deny.remove(net).is_some();
            change.removed += usize::from(allowed) + usize::from(denied);
        }
        change
    }

    /// Drops the deny entries that have expired; returns how many.
    pub fn prune(&mut self, now: &Clock) -> usize {
        let before = self.deny.len() + self.crowdsec.len();
        self.deny.retain(|_, expires| !now.expired(*expires));
        self.crowdsec
            .retain(|_, (_, expires)| !now.expired(*expires));
        before - self.deny.len() - self.crowdsec.len()
    }

    /// The persisted set; empty when there is no file yet.
    pub fn load(paths: &Paths) -> Result<LiveSet, LiveError> {
        let path = paths.state_dir.join(LIVE_FILE);
        let Some(file) = read_json::<LiveFile>(&path)? else {
            return Ok(LiveSet::default());
        };
        check_version(&path, file.version, FORMAT_VERSION)?;
        let mut set = LiveSet::default();
        for prefix in &file.allow {
            set.allow.insert(parse_net(&path, prefix)?);
        }
        for entry in &file.deny {
            let expires = entry.expires.map_or(Expiry::Never, Expiry::At);
            set.deny.insert(parse_net(&path, &entry.prefix)?, expires);
        }
        for entry in &file.crowdsec {
            let expires = entry.expires.map_or(Expiry::Never, Expiry::At);
            let net = parse_net(&path, &entry.prefix)?;
            set.crowdsec.insert(entry.id, (net, expires));
        }
        Ok(set)
    }

    /// Writes the set atomically (temporary file renamed over the old one), mode 0600.
    pub fn save(&self, paths: &Paths) -> Result<(), LiveError> {
        let file = LiveFile {
            version: FORMAT_VERSION,
            allow: self.allow.iter().map(ToString::to_string).collect(),
            deny: self
                .deny
                .iter()
                .map(|(net, expires)| DenyRecord {
                    prefix: net.to_string(),
                    expires: expires.unix(),
                })
                .collect(),
            crowdsec: self
                .crowdsec
                .iter()
                .map(|(id, (net, expires))| CrowdsecRecord {
                    id: *id,
                    prefix: net.to_string(),
                    expires: expires.unix(),
                })
                .collect(),
        };
        write_json(paths, LIVE_FILE, &file)
    }
}

#[derive(Serialize, Deserialize)]
struct LiveFile {
    version: u32,
    allow: Vec<String>,
    deny: Vec<DenyRecord>,
    /// Absent in files of builds without the bouncer.
    #[serde(default)]
    crowdsec: Vec<CrowdsecRecord>,
}

#[derive(Serialize, Deserialize)]
struct CrowdsecRecord {
    /// The LAPI's decision id.
    id: i64,
    prefix: String,
    /// Unix seconds; `null`: never.
    expires: Option<u64>,
}

/// Keeps the later of `expires` and what `nets` has for `net`.
fn later(nets: &mut BTreeMap<IpNet, Expiry>, net: IpNet, expires: Expiry) {
    let entry = nets.entry(net).or_insert(expires);
    *entry = (*entry).max(expires);
}

#[derive(Serialize, Deserialize)]
struct DenyRecord {
    prefix: String,
    /// Unix seconds; `null`: never.
    expires: Option<u64>,
}

/// The policy's `sources.allow` and `sources.deny`, as attach wrote them (for `source list`
/// and for telling a policy entry from a live one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySources {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

#[derive(Serialize, Deserialize)]
struct PolicySourcesFile {
    allow: Vec<String>,
    deny: Vec<String>,
}

impl PolicySources {
    pub fn contains(&self, net: &IpNet) -> bool {
        self.allow.contains(net) || self.deny.contains(net)
    }
}

/// Records the attached policy's source lists in `<state_dir>/policy-sources.json`.
pub fn save_policy_sources(
    paths: &Paths,
    allow: &[IpNet],
    deny: &[IpNet],
) -> Result<(), LiveError> {
    let strings = |list: &[IpNet]| list.iter().map(ToString::to_string).collect();
    let file = PolicySourcesFile {
        allow: strings(allow),
        deny: strings(deny),
    };
    write_json(paths, POLICY_SOURCES_FILE, &file)
}

/// The policy's source lists; empty when attach has not written them.
pub fn load_policy_sources(paths: &Paths) -> Result<PolicySources, LiveError> {
    let path = paths.state_dir.join(POLICY_SOURCES_FILE);
    let Some(file) = read_json::<PolicySourcesFile>(&path)? else {
        return Ok(PolicySources::default());
    };
    let nets = |list: &[String]| -> Result<Vec<IpNet>, LiveError> {
        list.iter().map(|s| parse_net(&path, s)).collect()
    };
    Ok(PolicySources {
        allow: nets(&file.allow)?,
        deny: nets(&file.deny)?,
    })
}

/// At attach and reload, under the command lock ([`crate::state::dir::lock`]): puts the persisted
/// live set (minus what expired) into fresh maps and returns the live config flags, which
/// the caller must keep in the config it enables.
pub fn restore_locked(paths: &Paths, maps: &mut Maps) -> Result<u32, LiveError> {
    let mut set = LiveSet::load(paths)?;
    let clock = Clock::now();
    let pruned = set.prune(&clock);
    let flags = set.apply_at(maps, &clock)?;
    if pruned > 0 {
        set.save(paths)?;
    }
    Ok(flags)
}

/// The maps of the generation in force: the shared ones and those of the record's
/// generation. Only under the command lock is that generation still in force once the
/// maps are open: a reload holds the lock until its swap is recorded.
pub(crate) fn open_in_force(paths: &Paths, record: &Record) -> Result<Maps, MapsError> {
    Maps::open_in(paths, &paths.generation_dir(record.policy.generation))
}

/// The JSON state file at `path`; `None` when there is none yet. A file that does not
/// parse is damaged, not unreadable: kept and reported so.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, LiveError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LiveError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let text = String::from_utf8(bytes).map_err(|_| corrupt(path, "not UTF-8 text".into()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| corrupt(path, e.to_string()))
}

/// The state file at `path` is damaged.
pub(crate) fn corrupt(path: &Path, reason: String) -> LiveError {
    LiveError::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}

/// Refuses a state file written in a format this build does not know.
pub(crate) fn check_version(path: &Path, version: u32, known: u32) -> Result<(), LiveError> {
    if version == known {
        Ok(())
    } else {
        Err(corrupt(path, format!("unknown format version {version}")))
    }
}

/// A prefix of a state file.
fn parse_net(path: &Path, text: &str) -> Result<IpNet, LiveError> {
    text.parse()
        .map_err(|_| corrupt(path, format!("'{text}' is not a CIDR")))
}

/// Writes `value` as `<state_dir>/<name>` atomically, readable by root only.
pub(crate) fn write_json(
    paths: &Paths,
    name: &str,
    value: &impl Serialize,
) -> Result<(), LiveError> {
    let path = paths.state_dir.join(name);
    let text = serde_json::to_string_pretty(value).expect("plain data always serialises");
    dir::write_atomic(&path, text.as_bytes()).map_err(|source| LiveError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn paths(dir: &Path) -> Paths {
        Paths {
            bpffs: dir.join("bpffs"),
            state_dir: dir.join("state"),
        }
    }

    #[test]
    fn save_and_load_round_trip_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        assert_eq!(LiveSet::load(&paths).unwrap(), LiveSet::default());
        let mut set = LiveSet::default();
        set.allow(&[net("2001:db8::/32")]);
        set.deny(&[net("192.0.2.0/24")], Expiry::At(1_900_000_000));
        set.deny(&[net("10.0.0.1/32")], Expiry::Never);
        set.save(&paths).unwrap();
        assert_eq!(LiveSet::load(&paths).unwrap(), set);
        let meta = std::fs::metadata(paths.state_dir.join(LIVE_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(!paths.state_dir.join("live-sources.json.tmp").exists());
    }

    #[test]
    fn a_damaged_file_is_reported_not_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        std::fs::create_dir_all(&paths.state_dir).unwrap();
        let file = paths.state_dir.join(LIVE_FILE);
        std::fs::write(&file, r#"{"version":1,"allow":["10.0.0.300/8"],"deny":[]}"#).unwrap();
        let err = LiveSet::load(&paths).unwrap_err();
        assert!(matches!(err, LiveError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("10.0.0.300/8"), "{err}");
        assert!(file.exists());
        std::fs::write(&file, b"\xff\xfe{").unwrap();
        let err = LiveSet::load(&paths).unwrap_err();
        assert!(
            err.to_string().contains("damaged (not UTF-8 text)"),
            "{err}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"\xff\xfe{");
    }

    #[test]
    fn deny_replaces_the_expiry_and_counts_changes() {
        let mut set = LiveSet::default();
        let nets = [net("192.0.2.0/24"), net("2001:db8::1/128")];
        let first = set.deny(&nets, Expiry::At(100));
        assert_eq!((first.added, first.updated), (2, 0));
        let again = set.deny(&nets[..1], Expiry::At(200));
        assert_eq!((again.added, again.updated), (0, 1));
        assert_eq!(set.deny[&nets[0]], Expiry::At(200));
        assert_eq!(set.deny(&nets[..1], Expiry::At(200)), Change::default());
    }

    #[test]
    fn remove_takes_both_lists_and_prune_only_the_expired() {
        let mut set = LiveSet::default();
        set.allow(&[net("10.0.0.0/8")]);
        set.deny(&[net("10.0.0.0/8")], Expiry::Never);
        set.deny(&[net("192.0.2.1/32")], Expiry::At(10));
        set.deny(&[net("192.0.2.2/32")], Expiry::At(20));
        assert_eq!(set.remove(&[net("10.0.0.0/8")]).removed, 2);
        assert!(!set.contains(&net("10.0.0.0/8")));
        let clock = Clock {
            wall_ns: 15_000_000_000,
            mono_ns: 1,
        };
        assert_eq!(set.prune(&clock), 1);
        assert_eq!(set.deny.keys().collect::<Vec<_>>(), [&net("192.0.2.2/32")]);
    }

    #[test]
    fn policy_sources_round_trip_and_default_to_empty() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        assert_eq!(
            load_policy_sources(&paths).unwrap(),
            PolicySources::default()
        );
        save_policy_sources(&paths, &[net("203.0.113.0/24")], &[net("2001:db8::/32")]).unwrap();
        let loaded = load_policy_sources(&paths).unwrap();
        assert_eq!(loaded.allow, [net("203.0.113.0/24")]);
        assert_eq!(loaded.deny, [net("2001:db8::/32")]);
        assert!(loaded.contains(&net("2001:db8::/32")));
    }

    #[test]
    fn input_errors_are_exit_2_and_name_every_line() {
        let err = LiveError::BadLines {
            file: "list.txt".into(),
            lines: vec![
                BadLine {
                    file: "list.txt".into(),
                    line: 2,
                    message: "x".into(),
                },
                BadLine {
                    file: "list.txt".into(),
                    line: 5,
                    message: "y".into(),
                },
            ],
        };
        assert!(err.is_invalid_input());
        assert_eq!(
            err.to_string(),
            "2 bad lines in list.txt; nothing was applied:\nlist.txt:2: x\nlist.txt:5: y"
        );
        let policy = LiveError::NotLive {
            prefix: net("192.0.2.0/24"),
            in_policy: true,
            crowdsec: false,
        };
        assert!(policy.to_string().contains("comes from the policy file"));
        let crowdsec = LiveError::NotLive {
            prefix: net("192.0.2.0/24"),
            in_policy: false,
            crowdsec: true,
        };
        assert_eq!(
            crowdsec.to_string(),
            "192.0.2.0/24 is not a live entry; CrowdSec denies it: delete the decision \
             (`cscli decisions delete`), or `source allow` it"
        );
    }
}
