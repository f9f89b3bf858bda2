//! `mirror-xdp port`: live port rules, in force within a second without re-attaching,
//! kept in the state folder so they survive reload, re-attach and restart.

use mirror_xdp::{
    control,
    live::ports::{Added, LivePorts, LivePortsError, LiveRule, PortSpec, from_text},
    policy::{ListItem, Policy},
    state::Paths,
};
use serde::Serialize;
use serde_json::Value;

use super::Failure;

/// Live port rules: open ports (to everyone or to some sources) or close them again, at
/// once, without re-attaching.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: PortCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum PortCommand {
    /// Open a port or range, to any source or only to the `--from` sources, on every
    /// address of the host or only on the `--to` ones.
    Allow {
        /// PORT/PROTO or LO-HI/PROTO: 8080/tcp, 30001-30010/udp.
        #[arg(value_name = "PORT[-PORT]/PROTO", value_parser = PortSpec::parse)]
        spec: PortSpec,
        /// Only these sources: CIDRs, addresses or set names of the policy (repeatable).
        #[arg(long, value_name = "CIDR|SET", num_args = 1.., value_parser = ListItem::parse)]
        from: Vec<ListItem>,
        /// Only to these destinations (the host's addresses): CIDRs, addresses or set names
        /// of the policy (repeatable).
        #[arg(long, value_name = "CIDR|SET", num_args = 1.., value_parser = ListItem::parse)]
        to: Vec<ListItem>,
    },
    /// Remove a live rule (exactly as it was allowed); policy ports change in the policy
    /// file.
    Remove {
        /// The live rule's ports, exactly as allowed (a range goes whole): 8080/tcp,
        /// 30001-30010/udp.
        #[arg(value_name = "PORT[-PORT]/PROTO", value_parser = PortSpec::parse)]
        spec: PortSpec,
    },
    /// Show the port rules: the policy's and the live ones.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    match args.command {
        PortCommand::Allow { spec, from, to } => allow(paths, spec, from, to),
        PortCommand::Remove { spec } => remove(paths, spec),
        PortCommand::List { json } => list(paths, json),
    }
}

fn allow(
    paths: &Paths,
    spec: PortSpec,
    from: Vec<ListItem>,
    to: Vec<ListItem>,
) -> Result<(), Failure> {
    let rule = LiveRule {
        spec,
        from: (!from.is_empty()).then_some(from),
        to: (!to.is_empty()).then_some(to),
    };
    let done = control::ports::allow(paths, rule.clone()).map_err(fail)?;
    let what = match done.added {
        Added::New => "added",
        Added::Replaced => "updated",
        Added::AlreadyInPlace => "already in place",
    };
    println!("allow {rule}: {what}");
    if !done.policy_lines.is_empty() {
        let lines: Vec<String> = done.policy_lines.iter().map(ToString::to_string).collect();
        println!(
            "note: the policy rule(s) at line {} list some of these ports with the same sources already",
            lines.join(", ")
        );
    }
    Ok(())
}

fn remove(paths: &Paths, spec: PortSpec) -> Result<(), Failure> {
    let done = control::ports::remove(paths, spec).map_err(fail)?;
    let ports = spec.ports.hi - spec.ports.lo + 1;
    let closed = usize::from(ports) - done.still_listed;
    if !done.attached {
        println!(
            "removed live rule {}; nothing is attached, so only the state file changed",
            done.rule
        );
    } else if done.still_listed == 0 {
        println!("removed live rule {}: closed", done.rule);
    } else {
        println!(
            "removed live rule {}: {closed} port(s) closed; {} stay as the policy or another live rule lists them",
            done.rule, done.still_listed
        );
    }
    for warning in &done.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// One line of `port list`.
#[derive(Debug, Serialize)]
struct Row {
    proto: &'static str,
    /// A number for one port, "lo-hi" for a range.
    ports: Value,
    /// `null`: any source. Live rules keep set names as given; policy rules show the
    /// prefixes their `from` expanded to.
    from: Option<Vec<String>>,
    /// The rule's `to` (destinations; a live rule's as given); absent: every address of
    /// the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<Vec<String>>,
    origin: &'static str,
}

fn rows(policy: Option<&Policy>, live: &LivePorts) -> Vec<Row> {
    let ports = |spec: &PortSpec| {
        if spec.ports.lo == spec.ports.hi {
            Value::from(spec.ports.lo)
        } else {
            Value::from(spec.ports_text())
        }
    };
    let mut rows = Vec::new();
    for rule in policy.map(|p| p.rules.as_slice()).unwrap_or_default() {
        for range in &rule.ports {
            let spec = PortSpec {
                proto: rule.proto,
                ports: *range,
            };
            rows.push(Row {
                proto: rule.proto.name(),
                ports: ports(&spec),
                from: rule.from.as_deref().map(strings),
                to: rule.to.as_deref().map(strings),
                origin: "policy",
            });
        }
    }
    for rule in &live.rules {
        rows.push(Row {
            proto: rule.spec.proto.name(),
            ports: ports(&rule.spec),
            from: rule.from.as_deref().map(strings),
            to: rule.to.as_deref().map(strings),
            origin: "live",
        });
    }
    rows
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

fn list(paths: &Paths, json: bool) -> Result<(), Failure> {
    let (policy, live) = control::ports::snapshot(paths).map_err(fail)?;
    let rows = rows(policy.as_ref(), &live);
    if json {
        let doc = serde_json::json!({ "ports": rows });
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
        return Ok(());
    }
    match &policy {
        None => eprintln!("note: nothing is attached; live rules apply at the next attach"),
        Some(policy) => {
            if let Some(note) = super::changed_on_disk(&policy.files) {
                eprintln!("note: {note}");
            }
        }
    }
    print!("{}", table(&rows));
    Ok(())
}

/// A `from` cell shows this many sources; a policy rule may name a set file of thousands.
const FROM_SHOWN: usize = 4;

fn table(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "no port rules\n".to_string();
    }
    let shortened = |list: &[String]| {
        if list.len() > FROM_SHOWN {
            format!(
                "{} (+{} more)",
                list[..FROM_SHOWN].join(", "),
                list.len() - FROM_SHOWN
            )
        } else {
            list.join(", ")
        }
    };
    let cells = rows.iter().map(|r| {
        let from = match &r.from {
            Some(list) => shortened(list),
            None => from_text::<String>(None),
        };
        let ports = match &r.ports {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let to = r.to.as_deref().map_or("every address".into(), shortened);
        [r.origin.to_string(), r.proto.to_string(), ports, from, to]
    });
    // The destinations column only where some rule has `to`.
    if rows.iter().any(|r| r.to.is_some()) {
        let cells: Vec<[String; 5]> = cells.collect();
        super::table::render(["ORIGIN", "PROTO", "PORTS", "FROM", "TO"], &cells)
    } else {
        let cells: Vec<[String; 4]> = cells.map(|[o, p, ports, f, _]| [o, p, ports, f]).collect();
        super::table::render(["ORIGIN", "PROTO", "PORTS", "FROM"], &cells)
    }
}

fn fail(e: LivePortsError) -> Failure {
    Failure::input_or_operational(e.is_invalid_input(), e)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const REMOVE_ARG_HELP: &str = "The live rule's ports, exactly as allowed";

    /// `port remove --help` says what its argument is.
    #[test]
    fn remove_help_describes_its_argument() {
        use clap::CommandFactory;
        let mut cli = super::super::Cli::command();
        let remove = cli
            .find_subcommand_mut("port")
            .and_then(|port| port.find_subcommand_mut("remove"))
            .expect("port remove");
        let help = remove.render_help().to_string();
        assert!(help.contains(REMOVE_ARG_HELP), "{help}");
    }

    fn rule(spec: &str, from: &[&str]) -> LiveRule {
        LiveRule {
            spec: PortSpec::parse(spec).unwrap(),
            from: (!from.is_empty())
                .then(|| from.iter().map(|s| ListItem::parse(s).unwrap()).collect()),
            to: None,
        }
    }

    #[test]
    fn rows_show_origin_ports_and_sources_as_json_wants_them() {
        let policy = Policy::parse(
            "version = 1\n[[ports]]\nproto = \"tcp\"\nports = [80, \"30001-30010\"]\n\
             [[ports]]\nproto = \"udp\"\nports = [5140]\nfrom = [\"198.51.100.0/24\"]\n",
            Path::new("p.toml"),
        )
        .unwrap();
        let live = LivePorts {
            rules: vec![rule("8082/tcp", &["admins", "203.0.113.7"])],
            ..LivePorts::default()
        };
        let doc = serde_json::to_value(rows(Some(&policy), &live)).unwrap();
        assert_eq!(
            doc,
            serde_json::json!([
                {"proto": "tcp", "ports": 80, "from": null, "origin": "policy"},
                {"proto": "tcp", "ports": "30001-30010", "from": null, "origin": "policy"},
                {"proto": "udp", "ports": 5140, "from": ["198.51.100.0/24"], "origin": "policy"},
                {"proto": "tcp", "ports": 8082, "from": ["admins", "203.0.113.7/32"], "origin": "live"},
            ])
        );
        assert_eq!(rows(None, &live).len(), 1);
    }

    #[test]
    fn rules_with_to_get_a_destinations_column() {
        let policy = Policy::parse(
            "version = 1\n[[ports]]\nproto = \"tcp\"\nports = [80]\nto = [\"198.51.100.1\"]\n\
             [[ports]]\nproto = \"tcp\"\nports = [443]\n",
            Path::new("p.toml"),
        )
        .unwrap();
        let live = LivePorts {
            rules: vec![LiveRule {
                to: Some(vec![ListItem::parse("public").unwrap()]),
                ..rule("8080/tcp", &["admins"])
            }],
            ..LivePorts::default()
        };
        let rows = rows(Some(&policy), &live);
        let doc = serde_json::to_value(&rows).unwrap();
        assert_eq!(doc[0]["to"], serde_json::json!(["198.51.100.1/32"]));
        assert!(doc[1].get("to").is_none(), "{doc}");
        assert_eq!(doc[2]["to"], serde_json::json!(["public"]));
        assert_eq!(
            table(&rows),
            "ORIGIN  PROTO  PORTS  FROM        TO\n\
             policy  tcp    80     any source  198.51.100.1/32\n\
             policy  tcp    443    any source  every address\n\
             live    tcp    8080   admins      public\n"
        );
    }

    #[test]
    fn table_aligns_and_shortens_long_source_lists() {
        let live = LivePorts {
            rules: vec![
                rule("8081/tcp", &[]),
                rule(
                    "30001-30010/udp",
                    &["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"],
                ),
            ],
            ..LivePorts::default()
        };
        assert_eq!(
            table(&rows(None, &live)),
            "ORIGIN  PROTO  PORTS        FROM\n\
             live    tcp    8081         any source\n\
             live    udp    30001-30010  10.0.0.1/32, 10.0.0.2/32, 10.0.0.3/32, 10.0.0.4/32 (+1 more)\n"
        );
        assert_eq!(table(&[]), "no port rules\n");
    }
}
