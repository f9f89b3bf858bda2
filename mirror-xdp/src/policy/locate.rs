//! Where a policy says what it says about an address: the `sources.allow` or `sources.deny`
//! entry that holds it, through a `[sets]` entry or a set file line (`mirror-xdp explain`),
//! and the text of a rule's table. Read from the texts the policy was compiled from.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use toml::Spanned;

use super::Policy;
use super::addr::{Entry, classify};
use super::raw::{RawItem, RawPolicy, RawSetDef};
use super::setfile;
use super::source::Source;

/// The two source lists of `[sources]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceList {
    Allow,
    Deny,
}

impl SourceList {
    pub fn key(self) -> &'static str {
        match self {
            SourceList::Allow => "sources.allow",
            SourceList::Deny => "sources.deny",
        }
    }
}

/// The entry that holds an address: the file and line it is written on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// `sources.allow` or `sources.deny`.
    pub list: &'static str,
    /// The prefix as written.
    pub entry: IpNet,
    pub file: PathBuf,
    pub line: usize,
    /// The `[sets]` name the list reached it through.
    pub set: Option<String>,
}

impl Policy {
    /// The first entry of `list` that holds `addr`, with where it is written; `None` when
    /// the list does not hold it (or the kept texts no longer parse).
    pub fn locate_source(&self, list: SourceList, addr: IpAddr) -> Option<Location> {
        let text = self.files.texts.get(&self.files.policy)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let raw: RawPolicy = toml::from_str(text).ok()?;
        let items = match list {
            SourceList::Allow => raw.sources.allow.as_ref(),
            SourceList::Deny => raw.sources.deny.as_ref(),
        }?;
        let finder = Finder {
            policy: self,
            src: Source::new(&self.files.policy, text),
            raw: &raw,
            addr,
            list: list.key(),
        };
        items
            .get_ref()
            .iter()
            .find_map(|item| finder.item(item, None))
    }

    /// The lines of the table that starts at `line` of the policy file (a rule's
    /// `[[ports]]` or `[[protocols]]` header), up to the next table, without trailing
    /// blank lines or comments.
    pub fn table_text(&self, line: usize) -> Vec<String> {
        let Some(text) = self.files.texts.get(&self.files.policy) else {
            return Vec::new();
        };
        let mut lines: Vec<String> = text
            .lines()
            .skip(line.saturating_sub(1))
            .enumerate()
            .take_while(|(i, l)| *i == 0 || !l.trim_start().starts_with('['))
            .map(|(_, l)| l.trim_end().to_string())
            .collect();
        while lines
            .last()
            .is_some_and(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            lines.pop();
        }
        lines
    }
}

struct Finder<'a> {
    policy: &'a Policy,
    src: Source<'a>,
    raw: &'a RawPolicy,
    addr: IpAddr,
    list: &'static str,
}

impl Finder<'_> {
    /// The item if it holds the address: a prefix, a set name (`set` is `None`: sets cannot
    /// name sets), or a file.
    fn item(&self, item: &Spanned<RawItem>, set: Option<&str>) -> Option<Location> {
        match item.get_ref() {
            RawItem::File(file) => self.file(file.get_ref(), set),
            RawItem::Text(text) => match classify(text).ok()? {
                Entry::Net(net) => net.contains(&self.addr).then(|| Location {
                    list: self.list,
                    entry: net,
                    file: self.policy.files.policy.clone(),
                    line: self.src.line_of(item),
                    set: set.map(str::to_string),
                }),
                Entry::Name(name) if set.is_none() => self.set(name),
                Entry::Name(_) => None,
            },
        }
    }

    fn set(&self, name: &str) -> Option<Location> {
        let (_, def) = self.raw.sets.iter().find(|(n, _)| n.get_ref() == name)?;
        match def.get_ref() {
            RawSetDef::List(items) => items.iter().find_map(|item| self.item(item, Some(name))),
            RawSetDef::File(file) => self.file(file.get_ref(), Some(name)),
        }
    }

    /// The line of a set file that holds the address.
    fn file(&self, name: &str, set: Option<&str>) -> Option<Location> {
        let path = setfile::resolve(&self.policy.files.policy, name);
        let text = self.policy.files.texts.get(&path)?;
        setfile::entries(text.as_bytes()).find_map(|entry| {
            let net = entry.net.ok()?;
            net.contains(&self.addr).then(|| Location {
                list: self.list,
                entry: net,
                file: path.clone(),
                line: entry.line,
                set: set.map(str::to_string),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn policy(dir: &Path, text: &str, set_file: &str) -> Policy {
        std::fs::write(dir.join("blocked.txt"), set_file).unwrap();
        Policy::parse(text, &dir.join("policy.toml")).unwrap()
    }

    const TEXT: &str = r#"version = 1

[sets]
admins = ["203.0.113.0/24",
          "2001:db8:a::/48"]
blocked = { file = "blocked.txt" }

[[ports]]
proto = "tcp"
ports = [22]
from = ["admins"]
# the web

[[ports]]
proto = "tcp"
ports = [80]

[sources]
allow = ["192.0.2.7", "admins"]
deny = ["blocked", { file = "blocked.txt" }]
"#;

    #[test]
    fn a_source_is_found_where_it_is_written_through_sets_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(
            dir.path(),
            TEXT,
            "# bad ones\n198.51.100.0/28\n\n2001:db8:bad::1\n",
        );
        let at = |list, addr: &str| p.locate_source(list, addr.parse().unwrap());

        let direct = at(SourceList::Allow, "192.0.2.7").unwrap();
        assert_eq!((direct.line, direct.set.as_deref()), (19, None));
        assert_eq!(direct.file, dir.path().join("policy.toml"));

        let via_set = at(SourceList::Allow, "2001:db8:a::10").unwrap();
        assert_eq!(via_set.entry, "2001:db8:a::/48".parse::<IpNet>().unwrap());
        assert_eq!((via_set.line, via_set.set.as_deref()), (5, Some("admins")));
        assert_eq!(via_set.list, "sources.allow");

        let in_file = at(SourceList::Deny, "198.51.100.9").unwrap();
        assert_eq!(in_file.file, dir.path().join("blocked.txt"));
        assert_eq!((in_file.line, in_file.set.as_deref()), (2, Some("blocked")));
        let v6 = at(SourceList::Deny, "2001:db8:bad::1").unwrap();
        assert_eq!(v6.line, 4);

        assert_eq!(at(SourceList::Deny, "198.51.100.16"), None);
        assert_eq!(at(SourceList::Allow, "198.51.100.9"), None);
    }

    #[test]
    fn a_rule_table_is_its_lines_up_to_the_next_table() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(dir.path(), TEXT, "");
        assert_eq!(
            p.table_text(8),
            [
                "[[ports]]",
                "proto = \"tcp\"",
                "ports = [22]",
                "from = [\"admins\"]"
            ]
        );
        assert_eq!(p.rules[0].line, 8);
        assert_eq!(p.table_text(14)[2], "ports = [80]");
    }
}
