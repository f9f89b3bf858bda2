//! Set files: one address or CIDR per line, `#` comments, blank lines; CRLF and a BOM tolerated.

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use toml::Spanned;

use super::PolicyError;
use super::addr::{looks_like_address, parse_net};
use super::files::Reader;
use super::source::Source;

/// Where `{ file = "..." }` points: relative names are relative to the policy file's folder.
pub(super) fn resolve(policy: &Path, file: &str) -> PathBuf {
    match policy.parent() {
        Some(dir) => dir.join(file),
        None => PathBuf::from(file),
    }
}

/// Reads and parses the set file that `file` (a value in `policy`) names. A file that cannot
/// be read is an error at that value; a bad entry is an error inside the set file.
pub(super) fn load(
    policy: &Source,
    reader: &mut Reader,
    file: &Spanned<String>,
) -> Result<Vec<IpNet>, PolicyError> {
    let name = file.get_ref();
    if name.trim().is_empty() {
        return Err(policy.error(file, "empty set file name"));
    }
    let path = resolve(policy.path, name);
    let bytes = reader.read(&path).map_err(|e| {
        let shown = path.display();
        policy.error(
            file,
            format!("cannot read set file '{name}' ({shown}): {e}"),
        )
    })?;
    parse(&path, &bytes)
}

/// Parses a set file's contents; errors name `path` and the line and column of the entry.
pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<IpNet>, PolicyError> {
    entries(bytes)
        .map(|entry| {
            entry
                .net
                .map_err(|why| PolicyError::new(path, entry.line, entry.column, why))
        })
        .collect()
}

/// One entry of a set file or list: where it is (1-based) and the prefix or why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub column: usize,
    pub net: Result<IpNet, String>,
}

/// The entries of a set file, or of any list in its format (`mirror-xdp source --file`):
/// one address or CIDR per line, `#` comments, blank lines; CRLF and a UTF-8 BOM
/// tolerated. A line that is not UTF-8 is a bad entry at its first bad byte.
pub fn entries(bytes: &[u8]) -> impl Iterator<Item = Entry> + '_ {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter_map(|(index, raw)| entry(index + 1, raw))
}

/// The entry of one line; `None` for a blank or comment line.
fn entry(line: usize, raw: &[u8]) -> Option<Entry> {
    let text = match std::str::from_utf8(raw) {
        Ok(text) => text,
        Err(e) => {
            let valid = std::str::from_utf8(&raw[..e.valid_up_to()]).unwrap_or_default();
            return Some(Entry {
                line,
                column: valid.chars().count() + 1,
                net: Err("not UTF-8 text".to_string()),
            });
        }
    };
    let text = text.strip_suffix('\r').unwrap_or(text);
    let content = text.split_once('#').map_or(text, |(before, _)| before);
    let entry = content.trim();
    if entry.is_empty() {
        return None;
    }
    let indent = content.len() - content.trim_start().len();
    Some(Entry {
        line,
        column: content[..indent].chars().count() + 1,
        net: parse_net(entry).map_err(|why| complaint(entry, why)),
    })
}

fn complaint(entry: &str, why: String) -> String {
    if entry.contains(char::is_whitespace) {
        format!("'{entry}' holds more than one entry; put one address or CIDR per line")
    } else if looks_like_address(entry) {
        format!("bad CIDR/address '{entry}': {why}")
    } else {
        format!("'{entry}' is not an address or CIDR")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn err(text: &[u8]) -> (usize, usize, String) {
        let e = parse(Path::new("/p/set.txt"), text).unwrap_err();
        assert_eq!(e.file, Path::new("/p/set.txt"));
        (e.line, e.column, e.message)
    }

    #[test]
    fn entries_comments_and_blank_lines() {
        let text =
            b"# peers\n\n10.0.0.0/8\n  192.0.2.1  # one host\n\t2001:db8::/32\n::1\n#\n   \n";
        let nets = parse(Path::new("set.txt"), text).unwrap();
        assert_eq!(
            nets,
            vec![
                net("10.0.0.0/8"),
                net("192.0.2.1/32"),
                net("2001:db8::/32"),
                net("::1/128")
            ]
        );
    }

    #[test]
    fn crlf_bom_and_no_final_newline() {
        let text = b"\xef\xbb\xbf10.0.0.0/8\r\n# c\r\n2001:db8::1 # x\r\n\r\n198.51.100.0/24";
        let nets = parse(Path::new("set.txt"), text).unwrap();
        assert_eq!(
            nets,
            vec![
                net("10.0.0.0/8"),
                net("2001:db8::1/128"),
                net("198.51.100.0/24")
            ]
        );
    }

    #[test]
    fn empty_file_is_an_empty_set() {
        assert_eq!(parse(Path::new("set.txt"), b""), Ok(vec![]));
        assert_eq!(
            parse(Path::new("set.txt"), b"\xef\xbb\xbf# only\r\n"),
            Ok(vec![])
        );
    }

    #[test]
    fn bad_entries_name_line_and_column() {
        assert_eq!(
            err(b"10.0.0.0/8\n\n   10.1.2.3/8 # typo\n"),
            (
                3,
                4,
                "bad CIDR/address '10.1.2.3/8': host bits set; did you mean 10.0.0.0/8?".into()
            )
        );
        assert_eq!(
            err(b"\xef\xbb\xbfbogus\r\n"),
            (1, 1, "'bogus' is not an address or CIDR".into())
        );
        assert_eq!(
            err(b"::1\r\n\t2001:db8::/200\r\n"),
            (
                2,
                2,
                "bad CIDR/address '2001:db8::/200': prefix length 200 is longer than 128 (IPv6)"
                    .into()
            )
        );
        assert_eq!(
            err(b"10.0.0.1 10.0.0.2\n"),
            (
                1,
                1,
                "'10.0.0.1 10.0.0.2' holds more than one entry; put one address or CIDR per line"
                    .into()
            )
        );
    }

    #[test]
    fn not_utf8_names_the_position() {
        assert_eq!(
            err(b"10.0.0.0/8\n  \xff\n"),
            (2, 3, "not UTF-8 text".into())
        );
        // In a comment too: the file is not text.
        assert_eq!(
            err(b"10.0.0.0/8 # caf\xe9\n"),
            (1, 17, "not UTF-8 text".into())
        );
    }

    #[test]
    fn entries_report_every_line_with_its_position() {
        let found: Vec<Entry> =
            entries(b"\xef\xbb\xbf# c\r\n\t10.0.0.1\r\nbogus\n\n::/200").collect();
        assert_eq!(
            found,
            [
                Entry {
                    line: 2,
                    column: 2,
                    net: Ok(net("10.0.0.1/32"))
                },
                Entry {
                    line: 3,
                    column: 1,
                    net: Err("'bogus' is not an address or CIDR".into())
                },
                Entry {
                    line: 5,
                    column: 1,
                    net: Err(
                        "bad CIDR/address '::/200': prefix length 200 is longer than 128 (IPv6)"
                            .into()
                    )
                },
            ]
        );
    }

    #[test]
    fn relative_names_are_relative_to_the_policy_folder() {
        let p = Path::new("/etc/mirror-xdp/policy.toml");
        assert_eq!(
            resolve(p, "peers.txt"),
            Path::new("/etc/mirror-xdp/peers.txt")
        );
        assert_eq!(resolve(p, "/srv/block.txt"), Path::new("/srv/block.txt"));
        assert_eq!(
            resolve(Path::new("policy.toml"), "peers.txt"),
            Path::new("peers.txt")
        );
    }
}
