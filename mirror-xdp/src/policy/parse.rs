//! Turns policy text into a validated [`Policy`]: version, settings, sets, rules, sources, limits.

use std::path::Path;

use toml::Spanned;

use super::from_room::FromRoom;
use super::ports::{PortOwners, from_key, port_range};
use super::raw::{Int, RawLimits, RawList, RawPolicy, RawRule, RawSettings, RawVersion};
use super::sets::Resolver;
use super::source::Source;
use super::{Action, Limits, Mode, Policy, PolicyError, PortRule, Proto, Settings};

/// Parses and validates policy text read from `path` (set files are relative to its folder).
pub(super) fn parse(text: &str, path: &Path) -> Result<Policy, PolicyError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let src = Source::new(path, text);
    let version: RawVersion = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
    check_version(&src, version.version)?;
    let raw: RawPolicy = toml::from_str(text).map_err(|e| src.toml_error(&e))?;

    let settings = settings(&src, &raw.settings)?;
    let mut resolver = Resolver::new(&src, &raw.sets)?;
    let rules = rules(&src, &mut resolver, &raw.ports)?;
    let mut list = |l: &Option<RawList>| match l {
        Some(l) => resolver.items(l.get_ref(), true),
        None => Ok(Vec::new()),
    };
    let allow = list(&raw.sources.allow)?;
    let deny = list(&raw.sources.deny)?;
    let limits = limits(&src, &raw.limits)?;
    let global_syn_rate_at = raw
        .limits
        .global_syn_rate
        .as_ref()
        .map(|v| src.line_col(v.span().start));
    Ok(Policy {
        path: path.to_path_buf(),
        settings,
        rules,
        allow,
        deny,
        limits,
        global_syn_rate_at,
        sets: resolver.into_sets(),
    })
}

fn check_version(src: &Source, version: Option<Spanned<toml::Value>>) -> Result<(), PolicyError> {
    let Some(version) = version else {
        return Err(src.error_at(
            0..0,
            "missing `version = 1`: a policy starts by naming its format version",
        ));
    };
    match version.get_ref() {
        toml::Value::Integer(1) => Ok(()),
        toml::Value::Integer(n) => Err(src.error(
            &version,
            format!("unsupported policy version {n}: this mirror-xdp reads version 1"),
        )),
        other => Err(src.error(
            &version,
            format!("version must be the integer 1, not {other}"),
        )),
    }
}

fn settings(src: &Source, raw: &RawSettings) -> Result<Settings, PolicyError> {
    let d = Settings::default();
    let mode = match &raw.mode {
        None => d.mode,
        Some(v) => match v.get_ref().as_str() {
            "enforce" => Mode::Enforce,
            "monitor" => Mode::Monitor,
            other => {
                let msg = format!("mode must be \"enforce\" or \"monitor\", not \"{other}\"");
                return Err(src.error(v, msg));
            }
        },
    };
    Ok(Settings {
        mode,
        default: action(src, "default", &raw.default, d.default)?,
        icmp: action(src, "icmp", &raw.icmp, d.icmp)?,
        fragments: action(src, "fragments", &raw.fragments, d.fragments)?,
        other_protocols: action(
            src,
            "other_protocols",
            &raw.other_protocols,
            d.other_protocols,
        )?,
        return_traffic: raw.return_traffic.unwrap_or(d.return_traffic),
    })
}

fn action(
    src: &Source,
    key: &str,
    value: &Option<Spanned<String>>,
    default: Action,
) -> Result<Action, PolicyError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.get_ref().as_str() {
        "pass" => Ok(Action::Pass),
        "drop" => Ok(Action::Drop),
        other => Err(src.error(
            value,
            format!("{key} must be \"pass\" or \"drop\", not \"{other}\""),
        )),
    }
}

fn rules(
    src: &Source,
    resolver: &mut Resolver,
    raw: &[Spanned<RawRule>],
) -> Result<Vec<PortRule>, PolicyError> {
    let mut owners = PortOwners::default();
    let mut room = FromRoom::default();
    let mut rules = Vec::with_capacity(raw.len());
    for (index, spanned) in raw.iter().enumerate() {
        let rule = spanned.get_ref();
        let proto = match &rule.proto {
            None => return Err(src.error(spanned, "rule has no `proto` (\"tcp\" or \"udp\")")),
            Some(p) => match p.get_ref().as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                other => {
                    let msg = format!("proto must be \"tcp\" or \"udp\", not \"{other}\"");
                    return Err(src.error(p, msg));
                }
            },
        };
        let Some(items) = &rule.ports else {
            let msg = "rule has no `ports` (an array of port numbers and \"lo-hi\" ranges)";
            return Err(src.error(spanned, msg));
        };
        if items.get_ref().is_empty() {
            let msg = "`ports` is empty: list at least one port number or \"lo-hi\" range";
            return Err(src.error(items, msg));
        }
        let mut ports = Vec::with_capacity(items.get_ref().len());
        for item in items.get_ref() {
            ports.push(port_range(item.get_ref()).map_err(|msg| src.error(item, msg))?);
        }
        let from = match &rule.from {
            None => None,
            Some(list) if list.get_ref().is_empty() => {
                return Err(src.error(
                    list,
                    "`from = []` admits no source and would block these ports for everyone; \
                     leave `from` out to admit any source, or list who may connect",
                ));
            }
            Some(list) => {
                let nets = resolver.items(list.get_ref(), true)?;
                room.take(&nets).map_err(|msg| src.error(list, msg))?;
                Some(nets)
            }
        };
        let key = from_key(&from);
        let line = src.line_of(spanned);
        for (range, item) in ports.iter().zip(items.get_ref()) {
            owners
                .claim(proto, *range, index, line, &key)
                .map_err(|msg| src.error(item, msg))?;
        }
        rules.push(PortRule {
            proto,
            ports,
            from,
            line,
        });
    }
    Ok(rules)
}

fn limits(src: &Source, raw: &RawLimits) -> Result<Limits, PolicyError> {
    let d = Limits::default();
    let count = |key: &str, value: &Option<Spanned<Int>>, default: u64| match value {
        None => Ok(default),
        Some(v) => u64::try_from(v.get_ref().0).map_err(|_| {
            src.error(
                v,
                format!("{key} must not be negative (0 or leaving it out turns it off)"),
            )
        }),
    };
    let prefix = |key: &str, value: &Option<Spanned<Int>>, max: u8, default: u8| match value {
        None => Ok(default),
        Some(v) => match u8::try_from(v.get_ref().0) {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(src.error(v, format!("{key} must be 1-{max}, not {}", v.get_ref().0))),
        },
    };
    let limits = Limits {
        per_source_pps: count("per_source_pps", &raw.per_source_pps, d.per_source_pps)?,
        per_source_burst: count(
            "per_source_burst",
            &raw.per_source_burst,
            d.per_source_burst,
        )?,
        per_source_syn_rate: count(
            "per_source_syn_rate",
            &raw.per_source_syn_rate,
            d.per_source_syn_rate,
        )?,
        per_source_syn_burst: count(
            "per_source_syn_burst",
            &raw.per_source_syn_burst,
            d.per_source_syn_burst,
        )?,
        global_syn_rate: count("global_syn_rate", &raw.global_syn_rate, d.global_syn_rate)?,
        ban_seconds: count("ban_seconds", &raw.ban_seconds, d.ban_seconds)?,
        source_prefix_v4: prefix(
            "source_prefix_v4",
            &raw.source_prefix_v4,
            32,
            d.source_prefix_v4,
        )?,
        source_prefix_v6: prefix(
            "source_prefix_v6",
            &raw.source_prefix_v6,
            128,
            d.source_prefix_v6,
        )?,
        syn_cookies: raw.syn_cookies.as_ref().is_some_and(|v| *v.get_ref()),
    };
    // Cookies answer the SYNs over the global budget (a source over its own SYN rate is
    // dropped and banned): without a global budget there is nothing to answer.
    if let Some(value) = &raw.syn_cookies
        && limits.syn_cookies
        && limits.global_syn_rate == 0
    {
        return Err(src.error(
            value,
            "syn_cookies needs global_syn_rate: cookies answer the SYNs over the global budget",
        ));
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::PathBuf;

    use ipnet::IpNet;

    use super::super::PortRange;
    use super::*;

    const SPEC_EXAMPLE: &str = r#"version = 1

[settings]
mode = "enforce"          # "enforce" | "monitor": monitor counts every would-be drop, passes all
default = "drop"          # TCP/UDP to a port no rule lists: "drop" | "pass"
icmp = "pass"             # other ICMP/ICMPv6: "pass" | "drop" (essentials below always pass)
fragments = "pass"        # non-first IP fragments (no L4 header): "pass" | "drop"
other_protocols = "drop"  # IP protocols other than TCP/UDP/ICMP/ICMPv6: "pass" | "drop"
return_traffic = true     # admit replies to connections this host opened itself

[sets]                    # named address sets: CIDRs, bare addresses, or a file of them
admins = ["203.0.113.0/24", "2001:db8:a::/48"]
peers = { file = "peers.txt" }        # one entry per line, '#' comments; relative to the policy file

[[ports]]                 # a rule: protocol, ports (numbers and "lo-hi" ranges), optional sources
proto = "tcp"             # "tcp" | "udp"
ports = [80, 443, 873, "30001-30010"]

[[ports]]
proto = "tcp"
ports = [22]
from = ["admins"]         # only these sources may reach these ports (set names, CIDRs, addresses)

[sources]
allow = ["admins"]        # trusted: bypass every later check, limits included
deny = ["192.0.2.0/24", { file = "blocklist.txt" }]   # always dropped

[limits]                  # every key optional; 0 or absent = off
per_source_pps = 20000    # packets per second from one source (token bucket)
per_source_burst = 40000
per_source_syn_rate = 100 # new TCP connections (SYN without ACK) per second from one source
per_source_syn_burst = 200
global_syn_rate = 100000  # SYNs per second to this host from all sources together
ban_seconds = 60          # a source that exceeds a per-source limit is dropped for this long
source_prefix_v4 = 32     # limits count per source prefix (e.g. 24 aggregates a /24)
source_prefix_v6 = 64
"#;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| net(s)).collect()
    }

    fn range(lo: u16, hi: u16) -> PortRange {
        PortRange { lo, hi }
    }

    fn one(port: u16) -> PortRange {
        range(port, port)
    }

    fn ok(text: &str) -> Policy {
        Policy::parse(text, Path::new("policy.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The error as the user sees it: "policy.toml:line:col: message".
    fn err(text: &str) -> String {
        match Policy::parse(text, Path::new("policy.toml")) {
            Ok(p) => panic!("accepted: {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// A folder with files in it; returns it and the path of "policy.toml" inside.
    fn folder(files: &[(&str, &[u8])]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in files {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        let policy = dir.path().join("policy.toml");
        (dir, policy)
    }

    fn load(files: &[(&str, &[u8])]) -> Result<Policy, PolicyError> {
        let (_dir, path) = folder(files);
        Policy::load(&path)
    }

    const PEERS: &[u8] = b"# peers\n198.51.100.7\n2001:db8:b::/48\n";
    const BLOCKLIST: &[u8] = b"198.18.0.0/15\n2001:db8:dead::/48\n192.0.2.0/24\n";

    #[test]
    fn spec_example() {
        let (_dir, path) = folder(&[
            ("policy.toml", SPEC_EXAMPLE.as_bytes()),
            ("peers.txt", PEERS),
            ("blocklist.txt", BLOCKLIST),
        ]);
        let p = Policy::load(&path).unwrap();
        assert_eq!(p.path, path);
        assert_eq!(
            p.settings,
            Settings {
                mode: Mode::Enforce,
                default: Action::Drop,
                icmp: Action::Pass,
                fragments: Action::Pass,
                other_protocols: Action::Drop,
                return_traffic: true,
            }
        );
        let admins = nets(&["203.0.113.0/24", "2001:db8:a::/48"]);
        assert_eq!(
            p.rules,
            vec![
                PortRule {
                    proto: Proto::Tcp,
                    ports: vec![one(80), one(443), one(873), range(30001, 30010)],
                    from: None,
                    line: 15,
                },
                PortRule {
                    proto: Proto::Tcp,
                    ports: vec![one(22)],
                    from: Some(admins.clone()),
                    line: 19,
                },
            ]
        );
        assert_eq!(p.allow, admins);
        // The inline 192.0.2.0/24 comes first; the file's copy of it is a duplicate.
        assert_eq!(
            p.deny,
            nets(&["192.0.2.0/24", "198.18.0.0/15", "2001:db8:dead::/48"])
        );
        assert_eq!(
            p.limits,
            Limits {
                per_source_pps: 20000,
                per_source_burst: 40000,
                per_source_syn_rate: 100,
                per_source_syn_burst: 200,
                global_syn_rate: 100000,
                ban_seconds: 60,
                source_prefix_v4: 32,
                source_prefix_v6: 64,
                syn_cookies: false,
            }
        );
        let ssh = p.rule_for(Proto::Tcp, 22).unwrap();
        assert_eq!(ssh.from.as_deref(), Some(&admins[..]));
        assert!(p.rule_for(Proto::Udp, 22).is_none());
    }

    #[test]
    fn spec_example_missing_set_file_points_at_its_name() {
        let (dir, path) = folder(&[
            ("policy.toml", SPEC_EXAMPLE.as_bytes()),
            ("blocklist.txt", BLOCKLIST),
        ]);
        let e = Policy::load(&path).unwrap_err();
        assert_eq!(
            (e.file.as_path(), e.line, e.column),
            (path.as_path(), 13, 18)
        );
        let peers = dir.path().join("peers.txt");
        assert!(
            e.message.starts_with(&format!(
                "cannot read set file 'peers.txt' ({}): ",
                peers.display()
            )),
            "{}",
            e.message
        );

        std::fs::write(dir.path().join("peers.txt"), PEERS).unwrap();
        std::fs::remove_file(dir.path().join("blocklist.txt")).unwrap();
        let e = Policy::load(&path).unwrap_err();
        assert_eq!((e.line, e.column), (26, 34));
        assert!(
            e.message
                .starts_with("cannot read set file 'blocklist.txt'")
        );
    }

    #[test]
    fn minimal_policy_takes_the_defaults() {
        let p = ok("version = 1\n");
        assert_eq!(p.settings, Settings::default());
        assert_eq!(p.rules, vec![]);
        assert_eq!(p.allow, vec![]);
        assert_eq!(p.deny, vec![]);
        assert_eq!(p.limits, Limits::default());
        assert_eq!(p.path, Path::new("policy.toml"));
    }

    #[test]
    fn settings_other_than_the_defaults() {
        let p = ok(r#"version = 1
[settings]
mode = "monitor"
default = "pass"
icmp = "drop"
fragments = "drop"
other_protocols = "pass"
return_traffic = false
"#);
        assert_eq!(
            p.settings,
            Settings {
                mode: Mode::Monitor,
                default: Action::Pass,
                icmp: Action::Drop,
                fragments: Action::Drop,
                other_protocols: Action::Pass,
                return_traffic: false,
            }
        );
        let p = ok("version = 1\n[settings]\nicmp = \"drop\"\n");
        assert_eq!(
            p.settings,
            Settings {
                icmp: Action::Drop,
                ..Settings::default()
            }
        );
    }

    #[test]
    fn bad_setting_values() {
        let s = "version = 1\n[settings]\n";
        assert_eq!(
            err(&format!("{s}mode = \"block\"\n")),
            "policy.toml:3:8: mode must be \"enforce\" or \"monitor\", not \"block\""
        );
        for key in ["default", "icmp", "fragments", "other_protocols"] {
            assert_eq!(
                err(&format!("{s}{key} = \"Drop\"\n")),
                format!(
                    "policy.toml:3:{}: {key} must be \"pass\" or \"drop\", not \"Drop\"",
                    key.len() + 4
                )
            );
        }
        assert_eq!(
            err(&format!("{s}mode = 5\n")),
            "policy.toml:3:8: invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            err(&format!("{s}return_traffic = \"yes\"\n")),
            "policy.toml:3:18: invalid type: string \"yes\", expected a boolean"
        );
    }

    #[test]
    fn version_is_required_and_must_be_1() {
        assert_eq!(
            err("[settings]\nmode = \"enforce\"\n"),
            "policy.toml:1:1: missing `version = 1`: a policy starts by naming its format version"
        );
        assert_eq!(
            err(""),
            "policy.toml:1:1: missing `version = 1`: a policy starts by naming its format version"
        );
        // Checked before the rest, so a newer file's new keys do not hide the reason.
        assert_eq!(
            err("# v2\nversion = 2\n[quotas]\nx = 1\n"),
            "policy.toml:2:11: unsupported policy version 2: this mirror-xdp reads version 1"
        );
        assert_eq!(
            err("version = \"1\"\n"),
            "policy.toml:1:11: version must be the integer 1, not \"1\""
        );
        assert_eq!(
            err("version = 1.0\n"),
            "policy.toml:1:11: version must be the integer 1, not 1.0"
        );
    }

    #[test]
    fn toml_syntax_errors_have_positions() {
        let e = err("version = 1\n[settings\nmode = \"monitor\"\n");
        assert!(
            e.starts_with("policy.toml:2:10: invalid table header"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let e = err("version = 1\nversion = 1\n");
        assert_eq!(
            e,
            "policy.toml:2:1: duplicate key `version` in document root"
        );
        // An unclosed array is noticed at the end of the file.
        let e = err("version = 1\n[[ports]]\nproto = \"tcp\"\nports = [80,\n");
        assert_eq!(e, "policy.toml:5:1: invalid array; expected `]`");
    }

    #[test]
    fn unknown_keys_anywhere() {
        assert_eq!(
            err("version = 1\n\nport = [80]\n"),
            "policy.toml:3:1: unknown field `port`, expected one of `version`, `settings`, \
             `sets`, `ports`, `sources`, `limits`"
        );
        assert_eq!(
            err("version = 1\n[settings]\n  defaults = \"drop\"\n"),
            "policy.toml:3:3: unknown field `defaults`, expected one of `mode`, `default`, \
             `icmp`, `fragments`, `other_protocols`, `return_traffic`"
        );
        assert_eq!(
            err("version = 1\n[[ports]]\nproto = \"tcp\"\nports = [22]\nsource = [\"a\"]\n"),
            "policy.toml:5:1: unknown field `source`, expected one of `proto`, `ports`, `from`"
        );
        assert_eq!(
            err("version = 1\n[sources]\ntrust = []\n"),
            "policy.toml:3:1: unknown field `trust`, expected `allow` or `deny`"
        );
        assert_eq!(
            err("version = 1\n[limits]\nsyn_rate = 5\n"),
            "policy.toml:3:1: unknown field `syn_rate`, expected one of `per_source_pps`, \
             `per_source_burst`, `per_source_syn_rate`, `per_source_syn_burst`, \
             `global_syn_rate`, `ban_seconds`, `source_prefix_v4`, `source_prefix_v6`, \
             `syn_cookies`"
        );
        assert_eq!(
            err("version = 1\n[sets]\na = { file = \"a.txt\", optional = true }\n"),
            "policy.toml:3:23: unknown field `optional`, expected `file`"
        );
        assert_eq!(
            err("version = 1\n[sources]\ndeny = [{ path = \"a.txt\" }]\n"),
            "policy.toml:3:11: unknown field `path`, expected `file`"
        );
        assert_eq!(
            err("version = 1\n[sources]\ndeny = [{}]\n"),
            "policy.toml:3:9: missing field `file`"
        );
    }

    #[test]
    fn rules_with_ranges_strings_and_udp() {
        let p = ok(r#"version = 1
[[ports]]
proto = "udp"
ports = [5140, "53", "6000-6010", 5140]
"#);
        assert_eq!(
            p.rules,
            vec![PortRule {
                proto: Proto::Udp,
                ports: vec![one(5140), one(53), range(6000, 6010), one(5140)],
                from: None,
                line: 2,
            }]
        );
    }

    #[test]
    fn bad_ports() {
        let r = "version = 1\n[[ports]]\nproto = \"tcp\"\n";
        assert_eq!(
            err(&format!("{r}ports = [80, 0]\n")),
            "policy.toml:4:14: port 0 is out of range (1-65535)"
        );
        assert_eq!(
            err(&format!("{r}ports = [65536]\n")),
            "policy.toml:4:10: port 65536 is out of range (1-65535)"
        );
        assert_eq!(
            err(&format!("{r}ports = [-22]\n")),
            "policy.toml:4:10: port -22 is out of range (1-65535)"
        );
        assert_eq!(
            err(&format!("{r}ports = [\"1-70000\"]\n")),
            "policy.toml:4:10: port 70000 in '1-70000' is out of range (1-65535)"
        );
        assert_eq!(
            err(&format!("{r}ports = [443, \"30010-30001\"]\n")),
            "policy.toml:4:15: reversed range '30010-30001': the low port comes first \
             (\"30001-30010\")"
        );
        assert_eq!(
            err(&format!("{r}ports = [\"30001:30010\"]\n")),
            "policy.toml:4:10: bad port range '30001:30010': expected a port number or \
             \"lo-hi\", like \"30001-30010\""
        );
        assert_eq!(
            err(&format!("{r}ports = [\"http\"]\n")),
            "policy.toml:4:10: bad port range 'http': expected a port number or \"lo-hi\", \
             like \"30001-30010\""
        );
        assert_eq!(
            err(&format!("{r}ports = [true]\n")),
            "policy.toml:4:10: invalid type: boolean `true`, expected a port number or a \
             \"lo-hi\" range string"
        );
        assert_eq!(
            err(&format!("{r}ports = 80\n")),
            "policy.toml:4:9: invalid type: integer `80`, expected an array"
        );
        assert_eq!(
            err(&format!("{r}ports = []\n")),
            "policy.toml:4:9: `ports` is empty: list at least one port number or \"lo-hi\" range"
        );
    }

    #[test]
    fn rules_need_proto_and_ports() {
        assert_eq!(
            err("version = 1\n\n[[ports]]\nports = [22]\n"),
            "policy.toml:3:1: rule has no `proto` (\"tcp\" or \"udp\")"
        );
        assert_eq!(
            err("version = 1\n[[ports]]\nproto = \"sctp\"\nports = [22]\n"),
            "policy.toml:3:9: proto must be \"tcp\" or \"udp\", not \"sctp\""
        );
        assert_eq!(
            err(
                "version = 1\n[[ports]]\nproto = \"tcp\"\nports = [22]\n[[ports]]\nproto = \"udp\"\n"
            ),
            "policy.toml:5:1: rule has no `ports` (an array of port numbers and \"lo-hi\" ranges)"
        );
    }

    #[test]
    fn empty_from_is_refused() {
        assert_eq!(
            err("version = 1\n[[ports]]\nproto = \"tcp\"\nports = [22]\nfrom = []\n"),
            "policy.toml:5:8: `from = []` admits no source and would block these ports for \
             everyone; leave `from` out to admit any source, or list who may connect"
        );
    }

    #[test]
    fn from_mixes_sets_cidrs_and_addresses_in_order_without_duplicates() {
        let p = ok(r#"version = 1
[sets]
a = ["10.0.0.0/8", "2001:db8::/32", "10.0.0.0/8"]
b = ["2001:db8::/32", "192.0.2.1"]
[[ports]]
proto = "udp"
ports = [5140]
from = ["b", "a", "192.0.2.1", "10.0.0.0/8", "::1", "2001:db8:1::/48"]
[sources]
allow = ["a"]
deny = ["2001:db8:bad::1", "198.51.100.0/24", "b"]
"#);
        assert_eq!(
            p.rules[0].from,
            Some(nets(&[
                "2001:db8::/32",
                "192.0.2.1/32",
                "10.0.0.0/8",
                "::1/128",
                "2001:db8:1::/48"
            ]))
        );
        assert_eq!(p.allow, nets(&["10.0.0.0/8", "2001:db8::/32"]));
        assert_eq!(
            p.deny,
            nets(&[
                "2001:db8:bad::1/128",
                "198.51.100.0/24",
                "2001:db8::/32",
                "192.0.2.1/32"
            ])
        );
    }

    #[test]
    fn bad_addresses_and_set_names() {
        let rule =
            "version = 1\n[sets]\nb = []\na = []\n[[ports]]\nproto = \"tcp\"\nports = [22]\n";
        assert_eq!(
            err(&format!("{rule}from = [\"a\", \"10.1.2.3/8\"]\n")),
            "policy.toml:8:14: bad CIDR/address '10.1.2.3/8': host bits set; did you mean \
             10.0.0.0/8?"
        );
        assert_eq!(
            err(&format!("{rule}from = [\"admins\"]\n")),
            "policy.toml:8:9: unknown set 'admins' (known sets: a, b)"
        );
        assert_eq!(
            err(&format!("{rule}from = [\"my admins\"]\n")),
            "policy.toml:8:9: 'my admins' is not an address, CIDR or set name"
        );
        assert_eq!(
            err(&format!("{rule}from = [\"2001:db8::/129\"]\n")),
            "policy.toml:8:9: bad CIDR/address '2001:db8::/129': prefix length 129 is longer \
             than 128 (IPv6)"
        );
        assert_eq!(
            err("version = 1\n[sources]\ndeny = [\"2001:db8::1/32\"]\n"),
            "policy.toml:3:9: bad CIDR/address '2001:db8::1/32': host bits set; did you mean \
             2001:db8::/32?"
        );
        assert_eq!(
            err("version = 1\n[sources]\nallow = [\"10.0.0.300\"]\n"),
            "policy.toml:3:10: bad CIDR/address '10.0.0.300': '10.0.0.300' is not an IPv4 or \
             IPv6 address"
        );
        assert_eq!(
            err("version = 1\n[sources]\nallow = [\"admins\"]\n"),
            "policy.toml:3:10: unknown set 'admins' (no sets are defined in [sets])"
        );
        assert_eq!(
            err("version = 1\n[sets]\na = [\"10.0.0.0/8\"]\nb = [\"a\"]\n"),
            "policy.toml:4:6: 'a' is not an address or CIDR (a set cannot name another set)"
        );
        assert_eq!(
            err("version = 1\n[sets]\nok = []\n\"office net\" = [\"10.0.0.0/8\"]\n"),
            "policy.toml:4:1: bad set name 'office net': a set name starts with a letter or \
             '_' and has only letters, digits, '_' and '-'"
        );
        assert_eq!(
            err("version = 1\n[sets]\na = [\"10.0.0.0/8\", 10]\n"),
            "policy.toml:3:20: invalid type: integer `10`, expected an address, CIDR or set \
             name string, or { file = \"...\" }"
        );
    }

    #[test]
    fn sets_resolve_in_file_order_for_errors() {
        // Both sets are bad; the error is the first one in the file, not in name order.
        assert_eq!(
            err("version = 1\n[sets]\nz = [\"bad/1\"]\na = [\"bad/2\"]\n"),
            "policy.toml:3:6: bad CIDR/address 'bad/1': 'bad' is not an IPv4 or IPv6 address"
        );
    }

    #[test]
    fn same_port_in_two_rules() {
        let base = r#"version = 1
[sets]
admins = ["203.0.113.0/24", "2001:db8:a::/48"]
[[ports]]
proto = "tcp"
ports = [22, 80]
from = ["admins"]
[[ports]]
proto = "tcp"
ports = [22]
from = ["2001:db8:a::/48", "203.0.113.0/24", "admins"]
[[ports]]
proto = "udp"
ports = [22, "1-100"]
"#;
        // Same `from` as a set (other order, duplicates), and udp is another port space.
        let p = ok(base);
        assert_eq!(p.rules.len(), 3);
        assert_eq!(
            p.rules[0].from,
            Some(nets(&["203.0.113.0/24", "2001:db8:a::/48"]))
        );
        assert_eq!(
            p.rules[1].from,
            Some(nets(&["2001:db8:a::/48", "203.0.113.0/24"]))
        );
        assert_eq!(
            err(&format!(
                "{base}[[ports]]\nproto = \"tcp\"\nports = [443, \"20-30\"]\n"
            )),
            "policy.toml:17:15: tcp port 22 is also in the rule at line 4, which has a \
             different `from`; a port has one source list (merge the rules, or give them the \
             same `from`)"
        );
        assert_eq!(
            err(&format!(
                "{base}[[ports]]\nproto = \"udp\"\nports = [53]\nfrom = [\"admins\"]\n"
            )),
            "policy.toml:17:10: udp port 53 is also in the rule at line 12, which has a \
             different `from`; a port has one source list (merge the rules, or give them the \
             same `from`)"
        );
        // Two open rules may share ports.
        let p = ok(&format!(
            "{base}[[ports]]\nproto = \"udp\"\nports = [\"50-60\"]\n"
        ));
        assert_eq!(p.rules[3].ports, vec![range(50, 60)]);
        assert_eq!(
            err(&format!(
                "{base}[[ports]]\nproto = \"tcp\"\nports = [80]\nfrom = [\"203.0.113.0/24\"]\n"
            )),
            "policy.toml:17:10: tcp port 80 is also in the rule at line 4, which has a \
             different `from`; a port has one source list (merge the rules, or give them the \
             same `from`)"
        );
    }

    #[test]
    fn limits() {
        let p = ok("version = 1\n[limits]\nper_source_burst = 10\nsource_prefix_v6 = 128\n");
        assert_eq!(
            p.limits,
            Limits {
                per_source_burst: 10,
                source_prefix_v6: 128,
                ..Limits::default()
            }
        );
        assert_eq!(p.limits.enabled(), Vec::<&str>::new());
        let p = ok("version = 1\n[limits]\nper_source_pps = 0\nsource_prefix_v4 = 1\n");
        assert_eq!(p.limits.per_source_pps, 0);
        assert_eq!(p.limits.source_prefix_v4, 1);

        let l = "version = 1\n[limits]\n";
        assert_eq!(
            err(&format!("{l}ban_seconds = -1\n")),
            "policy.toml:3:15: ban_seconds must not be negative (0 or leaving it out turns it off)"
        );
        assert_eq!(
            err(&format!("{l}source_prefix_v4 = 0\n")),
            "policy.toml:3:20: source_prefix_v4 must be 1-32, not 0"
        );
        assert_eq!(
            err(&format!("{l}source_prefix_v4 = 33\n")),
            "policy.toml:3:20: source_prefix_v4 must be 1-32, not 33"
        );
        assert_eq!(
            err(&format!("{l}source_prefix_v6 = 129\n")),
            "policy.toml:3:20: source_prefix_v6 must be 1-128, not 129"
        );
        assert_eq!(
            err(&format!("{l}source_prefix_v6 = -64\n")),
            "policy.toml:3:20: source_prefix_v6 must be 1-128, not -64"
        );
        assert_eq!(
            err(&format!("{l}per_source_pps = 1.5\n")),
            "policy.toml:3:18: invalid type: floating point `1.5`, expected a whole number"
        );
        assert_eq!(
            err(&format!("{l}global_syn_rate = \"100k\"\n")),
            "policy.toml:3:19: invalid type: string \"100k\", expected a whole number"
        );
    }

    #[test]
    fn syn_cookies_need_a_syn_limit() {
        let l = "version = 1\n[limits]\n";
        let p = ok(&format!("{l}global_syn_rate = 50\nsyn_cookies = true\n"));
        assert!(p.limits.syn_cookies);
        assert_eq!(p.limits.enabled(), ["global_syn_rate", "syn_cookies"]);
        assert_eq!(
            err(&format!("{l}syn_cookies = true\nper_source_syn_rate = 5\n")),
            "policy.toml:3:15: syn_cookies needs global_syn_rate: cookies answer the SYNs over \
             the global budget"
        );
        // Off needs nothing; absent is off.
        assert!(!ok(&format!("{l}syn_cookies = false\n")).limits.syn_cookies);
        assert!(!ok(l).limits.syn_cookies);
        assert_eq!(
            err(&format!("{l}per_source_pps = 10\nsyn_cookies = true\n")),
            "policy.toml:4:15: syn_cookies needs global_syn_rate: cookies answer the SYNs over \
             the global budget"
        );
        assert_eq!(
            err(&format!("{l}syn_cookies = 1\n")),
            "policy.toml:3:15: invalid type: integer `1`, expected a boolean"
        );
    }

    #[test]
    fn bom_in_the_policy_is_ignored() {
        let p = ok("\u{feff}version = 1\n[settings]\nmode = \"monitor\"\n");
        assert_eq!(p.settings.mode, Mode::Monitor);
        assert_eq!(
            err("\u{feff}version = 1\nbogus = 1\n"),
            "policy.toml:2:1: unknown field `bogus`, expected one of `version`, `settings`, \
             `sets`, `ports`, `sources`, `limits`"
        );
    }

    #[test]
    fn crlf_policy_positions() {
        assert_eq!(
            err("version = 1\r\n[settings]\r\nmode = \"x\"\r\n"),
            "policy.toml:3:8: mode must be \"enforce\" or \"monitor\", not \"x\""
        );
    }

    #[test]
    fn set_files_everywhere_with_crlf_bom_comments_and_ipv6() {
        let policy = br#"version = 1
[sets]
peers = { file = "peers.txt" }
mixed = ["10.0.0.0/8", { file = "peers.txt" }, "2001:db8:c::1"]
[[ports]]
proto = "tcp"
ports = [873]
from = [{ file = "peers.txt" }, "mixed"]
[sources]
allow = ["peers"]
deny = [{ file = "deny.txt" }]
"#;
        let peers = b"\xef\xbb\xbf# rsync peers\r\n198.51.100.7\r\n\r\n  2001:db8:b::/48  # v6\r\n";
        let deny = b"2001:db8:dead::/48\n# none else";
        let p = load(&[
            ("policy.toml", policy),
            ("peers.txt", peers),
            ("deny.txt", deny),
        ])
        .unwrap();
        let peer_nets = nets(&["198.51.100.7/32", "2001:db8:b::/48"]);
        assert_eq!(p.allow, peer_nets);
        assert_eq!(
            p.rules[0].from,
            Some(nets(&[
                "198.51.100.7/32",
                "2001:db8:b::/48",
                "10.0.0.0/8",
                "2001:db8:c::1/128"
            ]))
        );
        assert_eq!(p.deny, nets(&["2001:db8:dead::/48"]));
    }

    #[test]
    fn set_file_errors_name_the_set_file() {
        let policy = b"version = 1\n[sets]\npeers = { file = \"peers.txt\" }\n";
        let peers = b"\xef\xbb\xbf198.51.100.7\r\n# ok\r\n\t2001:db8:b::1/48 # typo\r\n";
        let (dir, path) = folder(&[("policy.toml", policy), ("peers.txt", peers)]);
        let e = Policy::load(&path).unwrap_err();
        assert_eq!(e.file, dir.path().join("peers.txt"));
        assert_eq!((e.line, e.column), (3, 2));
        assert_eq!(
            e.message,
            "bad CIDR/address '2001:db8:b::1/48': host bits set; did you mean 2001:db8:b::/48?"
        );

        std::fs::write(dir.path().join("peers.txt"), b"10.0.0.1\nadmins\n").unwrap();
        let e = Policy::load(&path).unwrap_err();
        assert_eq!(e.file, dir.path().join("peers.txt"));
        assert_eq!((e.line, e.column), (2, 1));
        assert_eq!(e.message, "'admins' is not an address or CIDR");
    }

    #[test]
    fn missing_set_file_in_a_list_points_at_the_name() {
        let policy =
            b"version = 1\n[sources]\ndeny = [\"192.0.2.0/24\", { file = \"nope.txt\" }]\n";
        let (dir, path) = folder(&[("policy.toml", policy)]);
        let e = Policy::load(&path).unwrap_err();
        assert_eq!(
            (e.file.as_path(), e.line, e.column),
            (path.as_path(), 3, 34)
        );
        let shown = dir.path().join("nope.txt");
        assert!(
            e.message.starts_with(&format!(
                "cannot read set file 'nope.txt' ({}): ",
                shown.display()
            )),
            "{}",
            e.message
        );
        assert_eq!(
            err("version = 1\n[sets]\na = { file = \"\" }\n"),
            "policy.toml:3:14: empty set file name"
        );
    }

    #[test]
    fn absolute_set_file_paths_and_empty_set_files() {
        let elsewhere = tempfile::tempdir().unwrap();
        let list = elsewhere.path().join("ssh.txt");
        std::fs::write(&list, b"# nobody yet\n").unwrap();
        let policy = format!(
            "version = 1\n[[ports]]\nproto = \"tcp\"\nports = [22]\nfrom = [{{ file = {:?} }}]\n",
            list.display().to_string()
        );
        let p = load(&[("policy.toml", policy.as_bytes())]).unwrap();
        // An empty file is an empty list: the port is closed to everyone, as the file says.
        assert_eq!(p.rules[0].from, Some(vec![]));
    }

    #[test]
    fn example_policy_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mirror.toml");
        let p = Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.settings, Settings::default());
        assert_eq!(p.settings.mode, Mode::Enforce);
        let admins = nets(&["203.0.113.0/24", "2001:db8:a::/48"]);
        assert_eq!(
            p.rules,
            vec![
                PortRule {
                    proto: Proto::Tcp,
                    ports: vec![
                        one(80),
                        one(443),
                        one(873),
                        one(8080),
                        one(5000),
                        one(9000),
                        one(3128),
                        range(30001, 30010),
                    ],
                    from: None,
                    line: 25,
                },
                PortRule {
                    proto: Proto::Tcp,
                    ports: vec![one(22)],
                    from: Some(admins),
                    line: 39,
                },
                PortRule {
                    proto: Proto::Udp,
                    ports: vec![one(5140)],
                    from: None,
                    line: 45,
                },
            ]
        );
        assert_eq!(p.allow, vec![]);
        assert_eq!(p.deny, nets(&["192.0.2.0/24"]));
        assert_eq!(p.limits, Limits::default());
        assert_eq!(p.limits.enabled(), Vec::<&str>::new());
        // The demo testbed's clients (198.51.100.0/24) must not be denied.
        let demo: IpAddr = "198.51.100.10".parse().unwrap();
        assert!(!p.deny.iter().any(|n| n.contains(&demo)));
    }
}
