//! Turns policy text into a validated [`Policy`]: version, settings, sets, rules, sources, limits.

use std::path::Path;

use toml::Spanned;

use super::destinations::{HOST, ToRoom, destinations};
use super::files::Reader;
use super::from_room::FromRoom;
use super::ports::{PortOwners, from_key, port_range};
use super::raw::{Int, RawLimits, RawList, RawPolicy, RawRule, RawSettings, RawVersion};
use super::sets::Resolver;
use super::source::Source;
use super::{Action, Limits, Mode, Policy, PolicyError, PortRule, Settings};

/// Parses and validates policy text read from `path` (set files are relative to its folder,
/// read by `reader`).
pub(super) fn parse(original: &str, path: &Path, reader: Reader) -> Result<Policy, PolicyError> {
    let text = original.strip_prefix('\u{feff}').unwrap_or(original);
    let src = Source::new(path, text);
    let version: RawVersion = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
    check_version(&src, version.version)?;
    let raw: RawPolicy = toml::from_str(text).map_err(|e| src.toml_error(&e))?;

    let settings = settings(&src, &raw.settings)?;
    let mut resolver = Resolver::new(&src, reader, &raw.sets)?;
    // Port and protocol rules' `from` and `to` lists share the kernel's tables.
    let mut rooms = (FromRoom::default(), ToRoom::default());
    let rules = rules(&src, &mut resolver, &mut rooms, &raw.ports)?;
    let protocols =
        super::protocols::protocol_rules(&src, &mut resolver, &mut rooms, &raw.protocols)?;
    let egress = super::egress::egress(&src, &mut resolver, &mut rooms.1, &raw.egress)?;
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
    let crowdsec = raw
        .crowdsec
        .as_ref()
        .map(|c| super::crowdsec::crowdsec(&src, path, c))
        .transpose()?;
    let (sets, reader) = resolver.into_parts();
    Ok(Policy {
        path: path.to_path_buf(),
        settings,
        rules,
        protocols,
        egress,
        allow,
        deny,
        limits,
        global_syn_rate_at,
        sets,
        crowdsec,
        files: reader.into_files(path, original),
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
    (room, to_room): &mut (FromRoom, ToRoom),
    raw: &[Spanned<RawRule>],
) -> Result<Vec<PortRule>, PolicyError> {
    let mut owners = PortOwners::default();
    let mut rules = Vec::with_capacity(raw.len());
    for (index, spanned) in raw.iter().enumerate() {
        let rule = spanned.get_ref();
        let proto = super::ports::proto(src, spanned, &rule.proto, "rule")?;
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
        let slots = ports.iter().map(|r| usize::from(r.hi - r.lo) + 1).sum();
        let to = destinations(src, resolver, to_room, (&rule.to, HOST), slots)?;
        let (key, to_key) = (from_key(&from), from_key(&to));
        let line = src.line_of(spanned);
        for (range, item) in ports.iter().zip(items.get_ref()) {
            owners
                .claim(proto, *range, (index, line), &key, &to_key)
                .map_err(|msg| src.error(item, msg))?;
        }
        rules.push(PortRule {
            proto,
            ports,
            from,
            to,
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
mod tests;
