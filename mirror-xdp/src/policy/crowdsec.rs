//! `[crowdsec]`: where `run` pulls CrowdSec's ban decisions from (README, "CrowdSec").

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::PolicyError;
use super::raw::RawCrowdsec;
use super::source::Source;

/// The shortest and longest `poll_interval`: the LAPI is asked at most once a second, and
/// a ban waits at most an hour.
const POLL_MIN: Duration = Duration::from_secs(1);
const POLL_MAX: Duration = Duration::from_secs(3600);

/// The decision scopes mirror-xdp can enforce: a source address or a range of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Ip,
    Range,
}

impl Scope {
    /// As the LAPI's `scopes` parameter names it.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::Range => "range",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crowdsec {
    /// The LAPI's base URL (`http://127.0.0.1:8080`).
    pub url: String,
    /// Relative paths are relative to the policy file's folder.
    pub api_key_file: PathBuf,
    pub poll_interval: Duration,
    /// Sorted, without repeats.
    pub scopes: Vec<Scope>,
}

pub(super) fn crowdsec(
    src: &Source,
    policy_path: &Path,
    raw: &RawCrowdsec,
) -> Result<Crowdsec, PolicyError> {
    let url = raw.url.get_ref().trim_end_matches('/').to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < "http://x".len()
    {
        return Err(src.error(
            &raw.url,
            format!("url must be the LAPI's http:// or https:// address, not {url:?}"),
        ));
    }
    let key = raw.api_key_file.get_ref();
    if key.is_empty() {
        return Err(src.error(&raw.api_key_file, "api_key_file must name a file"));
    }
    let folder = policy_path.parent().unwrap_or(Path::new("."));
    let poll_interval = match &raw.poll_interval {
        None => Duration::from_secs(10),
        Some(v) => interval(v.get_ref())
            .filter(|d| (POLL_MIN..=POLL_MAX).contains(d))
            .ok_or_else(|| {
                src.error(
                    v,
                    format!(
                        "poll_interval must be a duration from 1s to 1h such as \"10s\" or \
                         \"2m\", not {:?}",
                        v.get_ref()
                    ),
                )
            })?,
    };
    let mut scopes = match &raw.scopes {
        None => vec![Scope::Ip, Scope::Range],
        Some(list) => list
            .get_ref()
            .iter()
            .map(|s| scope(src, s))
            .collect::<Result<_, _>>()?,
    };
    if scopes.is_empty() {
        let list = raw.scopes.as_ref().expect("only a given list is empty");
        return Err(src.error(list, "scopes must name ip, range or both"));
    }
    scopes.sort();
    scopes.dedup();
    Ok(Crowdsec {
        url,
        api_key_file: folder.join(key),
        poll_interval,
        scopes,
    })
}

fn scope(src: &Source, s: &Spanned<String>) -> Result<Scope, PolicyError> {
    match s.get_ref().to_ascii_lowercase().as_str() {
        "ip" => Ok(Scope::Ip),
        "range" => Ok(Scope::Range),
        other => Err(src.error(
            s,
            format!(
                "scope {other:?}: mirror-xdp enforces decisions on addresses, scopes \"ip\" \
                 and \"range\""
            ),
        )),
    }
}

/// `10s`, `2m`, `1h`, `500ms`.
fn interval(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let n: u64 = text[..split].parse().ok()?;
    let ms = match &text[split..] {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    Some(Duration::from_millis(n.checked_mul(ms)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn parse(table: &str) -> Result<Policy, String> {
        let text = format!("version = 1\n\n[crowdsec]\n{table}");
        Policy::parse(&text, Path::new("/etc/mirror-xdp/policy.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_a_key_file_beside_the_policy() {
        let p =
            parse("url = \"http://127.0.0.1:8080/\"\napi_key_file = \"crowdsec.key\"\n").unwrap();
        assert_eq!(
            p.crowdsec,
            Some(Crowdsec {
                url: "http://127.0.0.1:8080".into(),
                api_key_file: "/etc/mirror-xdp/crowdsec.key".into(),
                poll_interval: Duration::from_secs(10),
                scopes: vec![Scope::Ip, Scope::Range],
            })
        );
        let p = parse(
            "url = \"https://lapi.example:8080\"\napi_key_file = \"/root/key\"\n\
             poll_interval = \"2m\"\nscopes = [\"Range\"]\n",
        )
        .unwrap()
        .crowdsec
        .unwrap();
        assert_eq!(p.api_key_file, Path::new("/root/key"));
        assert_eq!(p.poll_interval, Duration::from_secs(120));
        assert_eq!(p.scopes, [Scope::Range]);
        assert_eq!(
            Policy::parse("version = 1\n", Path::new("p.toml"))
                .unwrap()
                .crowdsec,
            None
        );
    }

    #[test]
    fn bad_values_are_refused_where_they_are() {
        for (table, line_col, words) in [
            (
                "url = \"127.0.0.1:8080\"\napi_key_file = \"k\"\n",
                ":4:7",
                "http://",
            ),
            (
                "url = \"http://x:1\"\napi_key_file = \"\"\n",
                ":5:16",
                "must name a file",
            ),
            (
                "url = \"http://x:1\"\napi_key_file = \"k\"\npoll_interval = \"0s\"\n",
                ":6:17",
                "1s to 1h",
            ),
            (
                "url = \"http://x:1\"\napi_key_file = \"k\"\npoll_interval = \"10\"\n",
                ":6:17",
                "1s to 1h",
            ),
            (
                "url = \"http://x:1\"\napi_key_file = \"k\"\nscopes = [\"country\"]\n",
                ":6:11",
                "\"country\"",
            ),
            (
                "url = \"http://x:1\"\napi_key_file = \"k\"\nscopes = []\n",
                ":6:10",
                "ip, range",
            ),
            ("url = \"http://x:1\"\n", "", "api_key_file"),
            (
                "url = \"http://x:1\"\napi_key_file = \"k\"\nkey = \"x\"\n",
                "",
                "key",
            ),
        ] {
            let e = parse(table).unwrap_err();
            assert!(e.contains(line_col) && e.contains(words), "{table}: {e}");
        }
    }
}
