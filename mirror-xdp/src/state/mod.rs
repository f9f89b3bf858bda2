//! Where an attached enforcer keeps its records: the pin folder on bpffs (maps, links) and
//! the state file (interfaces, policy, generation) that later commands read.

pub mod dir;
pub mod in_force;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::policy::{Policy, PortRange, Proto};

/// The default pin folder on bpffs.
pub const DEFAULT_BPFFS_DIR: &str = "/sys/fs/bpf/mirror-xdp";
/// The default folder of the state file.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/mirror-xdp";
const STATE_FILE: &str = "state.json";

/// The two folders an enforcer lives in. Tests give each testbed its own pair. The names of
/// the pins in `bpffs` are [`crate::lifecycle::pins`]'s.
#[derive(Clone, Debug)]
pub struct Paths {
    pub bpffs: PathBuf,
    pub state_dir: PathBuf,
}

impl Paths {
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join(STATE_FILE)
    }
}

/// What `status` and `stats` report about the attached enforcer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub mode: String,
    pub interfaces: Vec<InterfaceRecord>,
    pub policy: PolicyRecord,
    /// The port rules in force, for the per-port counters.
    pub ports: Vec<PortRecord>,
    /// The IP protocols `[[protocols]]` rules list, for their counters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<u8>,
    /// `net.ipv4.tcp_syncookies` before `attach` set it for `syn_cookies`: `detach` puts it
    /// back. Absent when the policy has no SYN cookies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_syncookies_before: Option<String>,
    /// `net.ipv4.tcp_timestamps` before `attach` turned the timestamp offsets off for the
    /// cookies' timestamps: `detach` puts it back. Absent when attach left it alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_timestamps_before: Option<String>,
    /// The size of the limiter table (a reload must ask for the same to reuse it).
    #[serde(default = "default_limiter_entries")]
    pub limiter_entries: u32,
    /// Reloads since attach, by outcome (`mirror_xdp_reloads_total`).
    #[serde(default)]
    pub reloads: ReloadCounts,
    /// SHA-256 (hex) of the eBPF object whose programs are in force: the build that
    /// attached or last reloaded (`status`). Absent in records of builds before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebpf_object: Option<String>,
}

/// Records without the field come from builds whose table always had 262,144 entries.
fn default_limiter_entries() -> u32 {
    1 << 18
}

/// How many reloads succeeded and failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadCounts {
    pub ok: u64,
    pub error: u64,
}

/// One attached interface. In JSON (the state file, `status --json`, `stats --json`):
/// `"egress": "tcx"|"tc"`, and for tc a `"tc_filter"` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "InterfaceJson", into = "InterfaceJson")]
pub struct InterfaceRecord {
    pub name: String,
    pub xdp_mode: String,
    /// The XDP program's id.
    pub prog_id: u32,
    /// Where the egress program hangs.
    pub egress: EgressHook,
}

/// [`InterfaceRecord`] as JSON has it; a record of a build before the tc hook has no
/// `egress`: TCX.
#[derive(Clone, Serialize, Deserialize)]
struct InterfaceJson {
    name: String,
    xdp_mode: String,
    prog_id: u32,
    #[serde(default)]
    egress: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tc_filter: Option<TcFilter>,
}

impl TryFrom<InterfaceJson> for InterfaceRecord {
    type Error = String;

    fn try_from(j: InterfaceJson) -> Result<Self, String> {
        let egress = match (j.egress.as_deref(), j.tc_filter) {
            (None | Some("tcx"), _) => EgressHook::Tcx,
            (Some("tc"), Some(filter)) => EgressHook::Tc(filter),
            (Some("tc"), None) => return Err(format!("{}: egress tc without tc_filter", j.name)),
            (Some(other), _) => return Err(format!("{}: unknown egress hook {other:?}", j.name)),
        };
        Ok(InterfaceRecord {
            name: j.name,
            xdp_mode: j.xdp_mode,
            prog_id: j.prog_id,
            egress,
        })
    }
}

impl From<InterfaceRecord> for InterfaceJson {
    fn from(r: InterfaceRecord) -> Self {
        InterfaceJson {
            egress: Some(r.egress.name().to_string()),
            tc_filter: match r.egress {
                EgressHook::Tcx => None,
                EgressHook::Tc(filter) => Some(filter),
            },
            name: r.name,
            xdp_mode: r.xdp_mode,
            prog_id: r.prog_id,
        }
    }
}

/// The hook the egress program of an interface uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EgressHook {
    /// A TCX link, pinned as `link_egress_IFACE` (Linux 6.6+).
    #[default]
    Tcx,
    /// A cls_bpf filter (direct action) on the clsact qdisc's egress hook.
    Tc(TcFilter),
}

impl EgressHook {
    /// `tcx` or `tc`, as `status` says it.
    pub fn name(&self) -> &'static str {
        match self {
            EgressHook::Tcx => "tcx",
            EgressHook::Tc(_) => "tc",
        }
    }
}

/// Our tc filter on an interface, and what detach must remove with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcFilter {
    pub priority: u16,
    pub handle: u32,
    /// Whether the clsact qdisc was added for this filter (detach removes it then, if no
    /// other filter is on it) or was there before (detach leaves it).
    pub clsact_created: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub path: PathBuf,
    pub generation: u64,
}

/// The rules of `policy` as the record keeps them: port ranges, and listed protocols.
pub fn rule_records(policy: &Policy) -> (Vec<PortRecord>, Vec<u8>) {
    let ports = policy
        .rules
        .iter()
        .flat_map(|r| r.ports.iter().map(|p| PortRecord::new(r.proto, *p)))
        .collect();
    let protocols = policy
        .protocols
        .iter()
        .flat_map(|r| r.protocols.iter().copied())
        .collect();
    (ports, protocols)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRecord {
    pub proto: ProtoName,
    pub lo: u16,
    pub hi: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtoName {
    Tcp,
    Udp,
}

impl From<Proto> for ProtoName {
    fn from(p: Proto) -> Self {
        match p {
            Proto::Tcp => ProtoName::Tcp,
            Proto::Udp => ProtoName::Udp,
        }
    }
}

impl From<ProtoName> for Proto {
    fn from(p: ProtoName) -> Self {
        match p {
            ProtoName::Tcp => Proto::Tcp,
            ProtoName::Udp => Proto::Udp,
        }
    }
}

impl PortRecord {
    pub fn new(proto: Proto, range: PortRange) -> Self {
        PortRecord {
            proto: proto.into(),
            lo: range.lo,
            hi: range.hi,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged ({source}); it is left in place for inspection")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Record {
    /// The interfaces it is attached to, as `eth0, eth1`.
    pub fn interface_names(&self) -> String {
        self.interfaces
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The record of the attached enforcer, or `None` when nothing is attached.
    pub fn load(paths: &Paths) -> Result<Option<Record>, StateError> {
        let path = paths.state_file();
        // Bytes, not text: a file that is not even UTF-8 is damaged, not unreadable.
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Corrupt { path, source })
    }

    /// Writes the record atomically (a temporary file renamed over the old one), readable by
    /// root only.
    pub fn save(&self, paths: &Paths) -> Result<(), StateError> {
        let path = paths.state_file();
        let err = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(self).expect("a record always serialises");
        crate::state::dir::write_atomic(&path, text.as_bytes()).map_err(err)
    }

    pub fn remove(paths: &Paths) -> Result<(), StateError> {
        let path = paths.state_file();
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StateError::Write { path, source: e })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interface_without_an_egress_field_uses_tcx_and_tc_round_trips() {
        let old = r#"{"name": "eth0", "xdp_mode": "native", "prog_id": 42}"#;
        let read: InterfaceRecord = serde_json::from_str(old).unwrap();
        assert_eq!(read.egress, EgressHook::Tcx);
        let tc = InterfaceRecord {
            egress: EgressHook::Tc(TcFilter {
                priority: 7,
                handle: 9,
                clsact_created: true,
            }),
            ..read
        };
        let text = serde_json::to_string(&tc).unwrap();
        assert!(
            text.contains(r#""egress":"tc","tc_filter":{"priority":7"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<InterfaceRecord>(&text).unwrap(), tc);
        let tcx = serde_json::to_string(&InterfaceRecord {
            egress: EgressHook::Tcx,
            ..tc
        })
        .unwrap();
        assert!(
            tcx.contains(r#""egress":"tcx""#) && !tcx.contains("tc_filter"),
            "{tcx}"
        );
        let bad = r#"{"name": "eth0", "xdp_mode": "native", "prog_id": 1, "egress": "tc"}"#;
        assert!(serde_json::from_str::<InterfaceRecord>(bad).is_err());
    }

    #[test]
    fn a_damaged_record_is_reported_and_left_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            bpffs: dir.path().join("bpffs"),
            state_dir: dir.path().to_path_buf(),
        };
        let damaged: [&[u8]; 4] = [b"", b"{\"mode\": \"enf", b"\xff\xfe{}", b"[1, 2, 3]"];
        for bytes in damaged {
            std::fs::write(paths.state_file(), bytes).unwrap();
            let err = Record::load(&paths).unwrap_err();
            assert!(
                matches!(err, StateError::Corrupt { .. }),
                "{bytes:?}: {err}"
            );
            let shown = err.to_string();
            assert!(shown.contains("state.json is damaged"), "{shown}");
            assert!(shown.contains("left in place for inspection"), "{shown}");
            assert_eq!(std::fs::read(paths.state_file()).unwrap(), bytes);
        }
    }
}
