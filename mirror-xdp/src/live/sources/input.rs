//! What `mirror-xdp source` reads: TTL durations and lists of CIDRs, one per line.

use ipnet::IpNet;

use crate::policy::setfile;

/// One rejected line of a list: shown as `FILE:LINE: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct BadLine {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Reads a list (`file` names it in messages) in the set-file format: one address or CIDR
/// per line, `#` comments, blank lines, CRLF and a UTF-8 BOM tolerated. Returns each entry
/// with its line number, or every bad line, so a script's author fixes them all in one go.
pub fn parse_list(file: &str, bytes: &[u8]) -> Result<Vec<(usize, IpNet)>, Vec<BadLine>> {
    let mut nets = Vec::new();
    let mut bad = Vec::new();
    for entry in setfile::entries(bytes) {
        match entry.net {
            Ok(net) => nets.push((entry.line, net)),
            Err(message) => bad.push(BadLine {
                file: file.to_string(),
                line: entry.line,
                message,
            }),
        }
    }
    if bad.is_empty() { Ok(nets) } else { Err(bad) }
}

/// A TTL in seconds: `30s`, `10m`, `2h`, `1d`, combinations such as `1h30m`, or a bare
/// number of seconds. Zero is refused: an entry that is gone at once is a mistake.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("'{text}' is not a duration (examples: 90, 30s, 10m, 2h, 1d, 1h30m)");
    if text.is_empty() {
        return Err(bad());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let secs = text.parse::<u64>().map_err(|_| bad())?;
        return nonzero(secs, text);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let count: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = count
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(|| format!("'{text}' is too long"))?;
    }
    if !digits.is_empty() {
        // "1h30": the unit of the last number is missing.
        return Err(bad());
    }
    nonzero(total, text)
}

fn nonzero(secs: u64, text: &str) -> Result<u64, String> {
    // Beyond a century the deadline would not fit the kernel's nanosecond clock.
    const MAX: u64 = 100 * 365 * 86_400;
    match secs {
        0 => Err(format!("'{text}' is zero; a TTL must be at least 1s")),
        s if s > MAX => Err(format!("'{text}' is too long (at most 100 years)")),
        s => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(30));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("1d2h3m4s"), Ok(93_784));
        assert_eq!(parse_duration("90"), Ok(90));
    }

    #[test]
    fn bad_durations() {
        for text in [
            "", "0", "0s", "0h0m", "s", "1x", "1h30", "-5", "1.5h", " 1h", "h1",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} accepted");
        }
        assert!(parse_duration("0s").unwrap_err().contains("zero"));
        assert!(parse_duration("99999999999999999999").is_err());
        assert!(
            parse_duration("999999999999d")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn lists_with_comments_blank_lines_crlf_and_bom() {
        let text =
            "\u{feff}# blocklist\r\n192.0.2.0/24\r\n\r\n  10.0.0.1  # one host\n2001:db8::/32";
        assert_eq!(
            parse_list("list.txt", text.as_bytes()),
            Ok(vec![
                (2, net("192.0.2.0/24")),
                (4, net("10.0.0.1/32")),
                (5, net("2001:db8::/32")),
            ])
        );
        assert_eq!(parse_list("-", b""), Ok(vec![]));
    }

    #[test]
    fn every_bad_line_is_reported() {
        let text = b"192.0.2.0/24\n10.1.2.3/8\nbanana\n10.0.0.1 10.0.0.2\n\xff\n";
        let bad = parse_list("list.txt", text).unwrap_err();
        let shown: Vec<String> = bad.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "list.txt:2: bad CIDR/address '10.1.2.3/8': host bits set; did you mean 10.0.0.0/8?",
                "list.txt:3: 'banana' is not an address or CIDR",
                "list.txt:4: '10.0.0.1 10.0.0.2' holds more than one entry; put one address or CIDR per line",
                "list.txt:5: not UTF-8 text",
            ]
        );
    }
}
