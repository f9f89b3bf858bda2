//! The body of `GET /v1/decisions/stream`: `{"new": [...], "deleted": [...]}` (either may
//! be null), read into what the live entries need.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use crate::control::sources::CrowdsecPull;
use crate::policy::crowdsec::Scope;

#[derive(Deserialize)]
struct Body {
    new: Option<Vec<Decision>>,
    deleted: Option<Vec<Decision>>,
}

/// The fields of a decision mirror-xdp reads (the LAPI sends more: origin, scenario...).
#[derive(Deserialize)]
struct Decision {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
    scope: String,
    value: String,
    /// Time left, as Go prints a duration: `3h59m58.7s`, `-26.3ms`.
    duration: String,
}

/// Decisions of a pull that do not become entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ignored {
    /// Not `ban` (captcha, throttle...).
    pub kind: u64,
    /// A scope not enforced (country, AS, username... or one `scopes` leaves out).
    pub scope: u64,
    /// A value or duration that does not parse, or a duration already over.
    pub invalid: u64,
}

/// Reads a stream body; `replace` marks a `startup=true` answer (the LAPI's full state).
pub fn read(
    body: &[u8],
    replace: bool,
    scopes: &[Scope],
) -> Result<(CrowdsecPull, Ignored), String> {
    let body: Body =
        serde_json::from_slice(body).map_err(|e| format!("not a decision stream: {e}"))?;
    let mut pull = CrowdsecPull {
        replace,
        ..CrowdsecPull::default()
    };
    let mut ignored = Ignored::default();
    for d in body.new.unwrap_or_default() {
        if !d.kind.eq_ignore_ascii_case("ban") {
            ignored.kind += 1;
            continue;
        }
        let scope = match d.scope.to_ascii_lowercase().as_str() {
            "ip" => Scope::Ip,
            "range" => Scope::Range,
            _ => {
                ignored.scope += 1;
                continue;
            }
        };
        if !scopes.contains(&scope) {
            ignored.scope += 1;
            continue;
        }
        match (prefix(&d.value), seconds_left(&d.duration)) {
            (Some(net), Some(secs)) if secs > 0 => pull.new.push((d.id, net, secs)),
            _ => ignored.invalid += 1,
        }
    }
    // Whatever a deleted decision was, its id no longer stands for an entry.
    pull.deleted = body
        .deleted
        .unwrap_or_default()
        .iter()
        .map(|d| d.id)
        .collect();
    Ok((pull, ignored))
}

/// `192.0.2.7`, `192.0.2.7/32`, `2001:db8::/48`; host bits of a range are cleared.
fn prefix(value: &str) -> Option<IpNet> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .ok()
}

/// Whole seconds left of a Go duration, rounded up; `None` when it does not parse, 0 when it
/// is over.
fn seconds_left(text: &str) -> Option<u64> {
    if text.starts_with('-') {
        return Some(0);
    }
    let mut ns = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        ns += n * scale;
        rest = &rest[unit_end..];
    }
    Some((ns / 1e9).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `startup=true` answer of crowdsec 1.4.6 (`cscli decisions add ...`), trimmed.
    const STARTUP: &str = r#"{"deleted":null,"new":[
{"duration":"59m58.709407763s","id":1,"origin":"cscli","scenario":"manual 'ban' from 'test'","scope":"Ip","type":"ban","value":"198.51.100.7"},
{"duration":"1h59m58.70940541s","id":2,"origin":"cscli","scenario":"m","scope":"Range","type":"ban","value":"198.51.100.0/24"},
{"duration":"1h59m59.7s","id":3,"origin":"cscli","scenario":"m","scope":"Range","type":"ban","value":"2001:db8:66::/48"},
{"duration":"1h59m59.7s","id":4,"origin":"cscli","scenario":"m","scope":"Ip","type":"captcha","value":"192.0.2.9"},
{"duration":"4h","id":5,"origin":"CAPI","scenario":"m","scope":"Country","type":"ban","value":"XX"},
{"duration":"4h","id":6,"origin":"cscli","scenario":"m","scope":"ip","type":"BAN","value":"2001:db8::7/128"},
{"duration":"4h","id":7,"origin":"cscli","scenario":"m","scope":"Ip","type":"ban","value":"not an address"},
{"duration":"-3s","id":8,"origin":"cscli","scenario":"m","scope":"Ip","type":"ban","value":"192.0.2.10"}
]}"#;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn bans_on_addresses_and_ranges_become_entries_and_the_rest_is_counted() {
        let (pull, ignored) = read(STARTUP.as_bytes(), true, &[Scope::Ip, Scope::Range]).unwrap();
        assert!(pull.replace);
        assert_eq!(
            pull.new,
            [
                (1, net("198.51.100.7/32"), 3599),
                (2, net("198.51.100.0/24"), 7199),
                (3, net("2001:db8:66::/48"), 7200),
                (6, net("2001:db8::7/128"), 14400),
            ]
        );
        assert_eq!(
            ignored,
            Ignored {
                kind: 1,
                scope: 1,
                invalid: 2
            }
        );
        let (pull, ignored) = read(STARTUP.as_bytes(), true, &[Scope::Ip]).unwrap();
        assert_eq!(pull.new.len(), 2, "{:?}", pull.new);
        assert_eq!(ignored.scope, 3);
    }

    #[test]
    fn deleted_decisions_are_taken_by_id() {
        let body = r#"{"deleted":[{"duration":"-26.3ms","id":1,"origin":"cscli","scenario":"m","scope":"Ip","type":"ban","value":"198.51.100.7"}],"new":null}"#;
        let (pull, _) = read(body.as_bytes(), false, &[Scope::Ip]).unwrap();
        assert_eq!((pull.new.len(), pull.deleted.as_slice()), (0, &[1][..]));
    }

    #[test]
    fn garbage_is_an_error_not_an_empty_pull() {
        for body in ["", "<html>502</html>", "{\"new\": 3}", "[]"] {
            assert!(read(body.as_bytes(), true, &[Scope::Ip]).is_err(), "{body}");
        }
    }

    #[test]
    fn go_durations_parse_to_whole_seconds_left() {
        assert_eq!(seconds_left("4h"), Some(14400));
        assert_eq!(seconds_left("1h2m3.5s"), Some(3724));
        assert_eq!(seconds_left("250ms"), Some(1));
        assert_eq!(seconds_left("168h0m0s"), Some(604_800));
        assert_eq!(seconds_left("-1m48.15s"), Some(0));
        assert_eq!(seconds_left("3d"), None);
        assert_eq!(seconds_left(""), None);
    }
}
