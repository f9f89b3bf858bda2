//! Live port rules (`mirror-xdp port`) and protocol rules (`mirror-xdp protocol`,
//! [`protocols`]): the persisted set of CLI rules, kept in `<state_dir>/live-ports.json` so
//! they survive reload, re-attach and restart.
//!
//! Attach and reload compile them together with the policy ([`Policy::with_live_ports`],
//! in [`merge`]); between reloads a change goes straight into the ports array and `from`
//! tries of the generation in force ([`kernel`]), under the lock a reload holds too
//! (`crate::control::ports`).

pub mod kernel;
pub mod merge;
pub mod protocols;

use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::kernel::maps::MapsError;
use crate::live::sources::{self, LiveError};
use crate::policy::{ListItem, Policy, PolicyError, PortRange, Proto, disjoint, parse_port_range};
use crate::state::{Paths, StateError};

pub use kernel::{KernelPorts, Plan, SlotWant, Want};
pub use merge::live_rules;
pub use protocols::{LiveProtocol, merge_protocols};

pub const FILE: &str = "live-ports.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LivePortsError {
    /// Reading or writing the state file.
    #[error(transparent)]
    File(#[from] LiveError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Lock(#[from] crate::state::dir::LockError),
    #[error("nothing is attached (no state in {0}); run `mirror-xdp attach` first")]
    NotAttached(PathBuf),
    /// The policy file of the attached enforcer: its rules and sets are what a live rule
    /// is checked against.
    #[error(
        "the attached policy does not validate, so live rules cannot be checked against it: {0}"
    )]
    Policy(#[from] PolicyError),
    /// The policy in force: what live rules are checked against and merged with.
    #[error(transparent)]
    InForce(#[from] crate::state::in_force::InForceError),
    /// A live rule that cannot join the policy: a port with two source lists, a set the
    /// policy does not define. The message says the way out.
    #[error("live rule {rule}: {message}")]
    Clash { rule: LiveRule, message: String },
    #[error("{spec} is not a live rule{hint}")]
    NotLive { spec: PortSpec, hint: String },
    /// A live protocol rule that cannot join the policy.
    #[error("live rule {rule}: {message}")]
    ProtocolClash { rule: LiveProtocol, message: String },
    #[error("{protocol} has no live rule{hint}")]
    NotLiveProtocol { protocol: String, hint: String },
    #[error("port map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error(
        "the live rules need more than 65536 distinct `from` lists in one generation; run `mirror-xdp reload` to renumber them"
    )]
    TooManyFromSets,
}

impl LivePortsError {
    /// Whether the user's input (the command, the policy file) is at fault: exit 2.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            LivePortsError::Policy(_)
                | LivePortsError::Clash { .. }
                | LivePortsError::NotLive { .. }
                | LivePortsError::ProtocolClash { .. }
                | LivePortsError::NotLiveProtocol { .. }
        )
    }
}

/// `PORT[-PORT]/PROTO` as the command line gives it: `8080/tcp`, `30001-30010/udp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    pub proto: Proto,
    pub ports: PortRange,
}

impl PortSpec {
    /// Reads `PORT[-PORT]/PROTO`; ports follow the policy file's rules and messages.
    pub fn parse(text: &str) -> Result<PortSpec, String> {
        let Some((ports, proto)) = text.rsplit_once('/') else {
            return Err(format!(
                "'{text}' names no protocol: write PORT/PROTO or LO-HI/PROTO, like 8080/tcp or 30001-30010/udp"
            ));
        };
        let proto = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => {
                return Err(format!(
                    "unknown protocol '{proto}' in '{text}': tcp or udp"
                ));
            }
        };
        Ok(PortSpec {
            proto,
            ports: parse_port_range(ports)?,
        })
    }

    /// The ports text without the protocol: `80`, `30001-30010`.
    pub fn ports_text(&self) -> String {
        let PortRange { lo, hi } = self.ports;
        if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        }
    }

    pub fn overlaps(&self, other: &PortSpec) -> bool {
        self.proto == other.proto
            && self.ports.lo <= other.ports.hi
            && other.ports.lo <= self.ports.hi
    }
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ports_text(), self.proto.name())
    }
}

/// One live rule: ports of one protocol, from any source or only from some, to every
/// address of the host or only to some.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveRule {
    pub spec: PortSpec,
    /// Set names stay names: they are resolved with the policy's `[sets]` at every
    /// reload, as the policy's own rules are.
    pub from: Option<Vec<ListItem>>,
    /// Destinations (`--to`), kept as given like `from`; `None`: every address.
    pub to: Option<Vec<ListItem>>,
}

impl LiveRule {
    /// Whether `other` says the same: same ports, same items in any order.
    fn same_as(&self, other: &LiveRule) -> bool {
        self.spec == other.spec
            && items_key(&self.from) == items_key(&other.from)
            && items_key(&self.to) == items_key(&other.to)
    }
}

impl std::fmt::Display for LiveRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} from {}", self.spec, from_text(self.from.as_deref()))?;
        if let Some(to) = &self.to {
            write!(f, " to {}", from_text(Some(to)))?;
        }
        Ok(())
    }
}

/// "any source", or the items comma-separated.
pub fn from_text<T: ToString>(from: Option<&[T]>) -> String {
    match from {
        None => "any source".to_string(),
        Some(items) => items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A live rule's `from` expanded with the policy's sets, or why not and what to do.
/// `what` names what it opens ("the ports").
fn resolve_from(
    policy: &Policy,
    from: &Option<Vec<ListItem>>,
    what: &str,
) -> Result<Option<Vec<IpNet>>, (String, String)> {
    let empty = format!("its sets hold no address, so {what} would be open to no one");
    resolve(policy, from, &empty, "name other sources")
}

/// A live rule's `to` expanded with the policy's sets, or why not and what to do.
fn resolve_to(
    policy: &Policy,
    to: &Option<Vec<ListItem>>,
) -> Result<Option<Vec<IpNet>>, (String, String)> {
    let empty = "its `--to` sets hold no address, so it would apply to no destination";
    resolve(policy, to, empty, "name other destinations")
}

fn resolve(
    policy: &Policy,
    items: &Option<Vec<ListItem>>,
    empty: &str,
    fix: &str,
) -> Result<Option<Vec<IpNet>>, (String, String)> {
    let Some(items) = items else {
        return Ok(None);
    };
    let nets = policy.resolve(items).map_err(|e| (e, fix.to_string()))?;
    if nets.is_empty() {
        // The policy file allows an empty set file (closed to all, as it says); a live
        // rule that opens nothing is a mistake.
        return Err((empty.to_string(), fix.to_string()));
    }
    Ok(Some(nets))
}

/// A live rule's `from` and `to` expanded with the policy's sets (`None`: any).
type Expanded = (Option<Vec<IpNet>>, Option<Vec<IpNet>>);

/// A rule's `from` and `to` as sets, to compare with another's.
#[derive(PartialEq)]
struct Lists {
    from: Option<Vec<IpNet>>,
    to: Option<Vec<IpNet>>,
}

impl Lists {
    fn new(from: &Option<Vec<IpNet>>, to: &Option<Vec<IpNet>>) -> Lists {
        Lists {
            from: from.as_deref().map(from_key),
            to: to.as_deref().map(from_key),
        }
    }

    /// Whether a rule with these lists may share a port or protocol with one with
    /// `other`'s.
    fn may_share(&self, other: &Lists) -> bool {
        self == other || disjoint(&self.to, &other.to)
    }
}

/// How two rules may share a port or a protocol, as the policy file's checks say it.
const SHARING: &str = "two rules may share a port or protocol if they have the same `from` and \
                       `to`, or `to` lists that share no address";

/// Items given for `from` as a set (sorted, no duplicates): the same in any order.
fn items_key(from: &Option<Vec<ListItem>>) -> Option<Vec<ListItem>> {
    from.as_ref().map(|items| {
        let mut items = items.clone();
        items.sort();
        items.dedup();
        items
    })
}

/// A `from` list as a set (sorted, no duplicates): two rules agree when these are equal.
pub fn from_key(nets: &[IpNet]) -> Vec<IpNet> {
    let mut nets: Vec<IpNet> = nets.iter().map(IpNet::trunc).collect();
    nets.sort();
    nets.dedup();
    nets
}

/// The live rules, in the order they were added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LivePorts {
    pub rules: Vec<LiveRule>,
    /// Live protocol rules, one per protocol.
    pub protocols: Vec<LiveProtocol>,
}

/// What adding a rule changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    New,
    /// The rule for the same ports took the new sources (`port allow` again changes a
    /// live rule's `from`, as `source deny` again changes an expiry).
    Replaced,
    AlreadyInPlace,
}

impl LivePorts {
    pub fn position(&self, spec: &PortSpec) -> Option<usize> {
        self.rules.iter().position(|r| r.spec == *spec)
    }

    /// The set with `rule` in it. A rule for the same ports keeps its place and takes the
    /// new sources; whether they clash with other rules is the merge's question.
    pub fn with(&self, rule: LiveRule) -> (LivePorts, Added) {
        let mut after = self.clone();
        match self.position(&rule.spec) {
            Some(i) if self.rules[i].same_as(&rule) => (after, Added::AlreadyInPlace),
            Some(i) => {
                after.rules[i] = rule;
                (after, Added::Replaced)
            }
            None => {
                after.rules.push(rule);
                (after, Added::New)
            }
        }
    }

    /// The persisted set; empty when there is no file yet.
    pub fn load(paths: &Paths) -> Result<LivePorts, LiveError> {
        let path = paths.state_dir.join(FILE);
        let Some(file) = sources::read_json::<PortsFile>(&path)? else {
            return Ok(LivePorts::default());
        };
        sources::check_version(&path, file.version, FORMAT_VERSION)?;
        let corrupt = |reason| sources::corrupt(&path, reason);
        let mut set = LivePorts::default();
        for record in file.rules {
            let spec =
                PortSpec::parse(&format!("{}/{}", record.ports, record.proto)).map_err(&corrupt)?;
            let from = items(record.from).map_err(&corrupt)?;
            let to = items(record.to).map_err(&corrupt)?;
            set.rules.push(LiveRule { spec, from, to });
        }
        for record in file.protocols {
            // The rules of `protocol allow`: not TCP, UDP or ICMP.
            let protocol =
                crate::policy::protocols::parse(&record.protocol.to_string()).map_err(&corrupt)?;
            let from = items(record.from).map_err(&corrupt)?;
            let to = items(record.to).map_err(&corrupt)?;
            set.protocols.push(LiveProtocol { protocol, from, to });
        }
        Ok(set)
    }

    /// Writes the set atomically (temporary file renamed over the old one), mode 0600.
    pub fn save(&self, paths: &Paths) -> Result<(), LiveError> {
        let file = PortsFile {
            version: FORMAT_VERSION,
            rules: self
                .rules
                .iter()
                .map(|r| RuleRecord {
                    proto: r.spec.proto.name().to_string(),
                    ports: r.spec.ports_text(),
                    from: r
                        .from
                        .as_ref()
                        .map(|items| items.iter().map(ToString::to_string).collect()),
                    to: r
                        .to
                        .as_ref()
                        .map(|items| items.iter().map(ToString::to_string).collect()),
                })
                .collect(),
            protocols: self
                .protocols
                .iter()
                .map(|r| ProtocolRecord {
                    protocol: r.protocol,
                    from: r
                        .from
                        .as_ref()
                        .map(|i| i.iter().map(ToString::to_string).collect()),
                    to: r
                        .to
                        .as_ref()
                        .map(|i| i.iter().map(ToString::to_string).collect()),
                })
                .collect(),
        };
        sources::write_json(paths, FILE, &file)
    }
}

#[derive(Serialize, Deserialize)]
struct PortsFile {
    version: u32,
    rules: Vec<RuleRecord>,
    /// Absent in the files of builds before live protocol rules.
    #[serde(default)]
    protocols: Vec<ProtocolRecord>,
}

#[derive(Serialize, Deserialize)]
struct ProtocolRecord {
    protocol: u8,
    /// CIDRs and set names; `null`: any source.
    from: Option<Vec<String>>,
    /// Destinations as `from`; absent: every address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<Vec<String>>,
}

/// Items as the state file keeps them (`null`: any source).
fn items(from: Option<Vec<String>>) -> Result<Option<Vec<ListItem>>, String> {
    from.map(|items| items.iter().map(|text| ListItem::parse(text)).collect())
        .transpose()
}

#[derive(Serialize, Deserialize)]
struct RuleRecord {
    proto: String,
    /// "8080" or "30001-30010".
    ports: String,
    /// CIDRs and set names; `null`: any source.
    from: Option<Vec<String>>,
    /// Destinations as `from`; absent: every address (and in the files of builds before
    /// live rules had `to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn spec(text: &str) -> PortSpec {
        PortSpec::parse(text).unwrap()
    }

    pub(super) fn rule(text: &str, from: &[&str]) -> LiveRule {
        LiveRule {
            spec: spec(text),
            from: (!from.is_empty())
                .then(|| from.iter().map(|s| ListItem::parse(s).unwrap()).collect()),
            to: None,
        }
    }

    /// [`rule`] with destinations.
    pub(super) fn rule_to(text: &str, from: &[&str], to: &[&str]) -> LiveRule {
        LiveRule {
            to: Some(to.iter().map(|s| ListItem::parse(s).unwrap()).collect()),
            ..rule(text, from)
        }
    }

    #[test]
    fn port_specs() {
        assert_eq!(
            spec("80/tcp"),
            PortSpec {
                proto: Proto::Tcp,
                ports: PortRange { lo: 80, hi: 80 }
            }
        );
        let range = spec("30001-30010/udp");
        assert_eq!(range.proto, Proto::Udp);
        assert_eq!(
            range.ports,
            PortRange {
                lo: 30001,
                hi: 30010
            }
        );
        assert_eq!(range.to_string(), "30001-30010/udp");
        assert_eq!(spec("8080/TCP").to_string(), "8080/tcp");
        assert_eq!(spec("1-65535/tcp").ports, PortRange { lo: 1, hi: 65535 });
    }

    #[test]
    fn bad_port_specs_say_why() {
        let err = |s: &str| PortSpec::parse(s).unwrap_err();
        assert_eq!(err("0/tcp"), "port 0 is out of range (1-65535)");
        assert_eq!(err("70000/tcp"), "port 70000 is out of range (1-65535)");
        assert!(err("30010-30001/udp").contains("reversed range"));
        assert!(err("80/icmp").contains("unknown protocol 'icmp'"));
        assert!(err("80").contains("names no protocol"));
        assert!(err("http/tcp").contains("bad port range"));
        assert!(err("/tcp").contains("bad port range"));
    }

    #[test]
    fn with_adds_replaces_or_keeps() {
        let set = LivePorts::default();
        let (set, added) = set.with(rule("8081/tcp", &[]));
        assert_eq!(added, Added::New);
        let (same, added) = set.with(rule("8081/tcp", &[]));
        assert_eq!((added, &same), (Added::AlreadyInPlace, &set));
        let (set, added) = set.with(rule("8082/tcp", &["admins", "10.0.0.0/8"]));
        assert_eq!(added, Added::New);
        let (_, added) = set.with(rule("8082/tcp", &["10.0.0.0/8", "admins"]));
        assert_eq!(added, Added::AlreadyInPlace);
        let (after, added) = set.with(rule("8082/tcp", &["admins"]));
        assert_eq!(added, Added::Replaced);
        assert_eq!(after.rules.len(), 2);
        assert_eq!(after.rules[1], rule("8082/tcp", &["admins"]));
    }

    #[test]
    fn save_and_load_round_trip_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            bpffs: dir.path().join("bpffs"),
            state_dir: dir.path().join("state"),
        };
        assert_eq!(LivePorts::load(&paths).unwrap(), LivePorts::default());
        let set = LivePorts {
            rules: vec![
                rule("8081/tcp", &[]),
                rule("30001-30010/udp", &["admins", "2001:db8::/32"]),
                rule_to("8443/tcp", &[], &["public", "198.51.100.1"]),
            ],
            protocols: vec![
                LiveProtocol {
                    protocol: 112,
                    from: Some(vec![ListItem::parse("peers").unwrap()]),
                    to: Some(vec![ListItem::parse("203.0.113.1").unwrap()]),
                },
                LiveProtocol {
                    protocol: 47,
                    from: None,
                    to: None,
                },
            ],
        };
        set.save(&paths).unwrap();
        assert_eq!(LivePorts::load(&paths).unwrap(), set);
        let meta = std::fs::metadata(paths.state_dir.join(FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        std::fs::write(
            paths.state_dir.join(FILE),
            r#"{"version":1,"rules":[{"proto":"tcp","ports":"0","from":null}]}"#,
        )
        .unwrap();
        let err = LivePorts::load(&paths).unwrap_err();
        assert!(matches!(err, LiveError::Corrupt { .. }), "{err}");
        // A file of a build before live protocol rules.
        std::fs::write(
            paths.state_dir.join(FILE),
            r#"{"version":1,"rules":[{"proto":"tcp","ports":"8081","from":null}]}"#,
        )
        .unwrap();
        let old = LivePorts::load(&paths).unwrap();
        assert_eq!((old.rules.len(), old.protocols.len()), (1, 0));
        std::fs::write(
            paths.state_dir.join(FILE),
            r#"{"version":1,"rules":[],"protocols":[{"protocol":6,"from":null}]}"#,
        )
        .unwrap();
        let err = LivePorts::load(&paths).unwrap_err();
        assert!(err.to_string().contains("TCP has its own rules"), "{err}");
    }
}
