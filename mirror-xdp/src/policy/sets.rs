//! Expands address lists to prefixes: `[sets]`, set names, set files, CIDRs and addresses.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use ipnet::IpNet;
use toml::Spanned;

use super::PolicyError;
use super::addr::{Entry, classify, dedup, is_identifier};
use super::files::Reader;
use super::raw::{RawItem, RawSetDef};
use super::setfile;
use super::source::Source;

/// The resolved `[sets]`, and the set files read so far (each is read once).
pub(super) struct Resolver<'a, 'k> {
    src: &'a Source<'a>,
    reader: Reader<'k>,
    sets: BTreeMap<String, Vec<IpNet>>,
    files: HashMap<PathBuf, Vec<IpNet>>,
}

impl<'a, 'k> Resolver<'a, 'k> {
    /// Resolves every set of `[sets]` (used or not), in the order the file lists them.
    pub fn new(
        src: &'a Source<'a>,
        reader: Reader<'k>,
        raw: &BTreeMap<Spanned<String>, Spanned<RawSetDef>>,
    ) -> Result<Self, PolicyError> {
        let mut resolver = Resolver {
            src,
            reader,
            sets: BTreeMap::new(),
            files: HashMap::new(),
        };
        let mut defs: Vec<_> = raw.iter().collect();
        defs.sort_by_key(|(name, _)| name.span().start);
        for (name, def) in defs {
            if !is_identifier(name.get_ref()) {
                return Err(src.error(
                    name,
                    format!(
                        "bad set name '{}': a set name starts with a letter or '_' and has \
                         only letters, digits, '_' and '-'",
                        name.get_ref()
                    ),
                ));
            }
            let nets = match def.get_ref() {
                RawSetDef::List(items) => resolver.items(items, false)?,
                RawSetDef::File(file) => resolver.file(file)?,
            };
            resolver.sets.insert(name.get_ref().clone(), nets);
        }
        Ok(resolver)
    }

    /// Expands a list of items to prefixes, in order of appearance without duplicates.
    /// `names`: whether set names are allowed (not inside `[sets]` itself).
    pub fn items(
        &mut self,
        items: &[Spanned<RawItem>],
        names: bool,
    ) -> Result<Vec<IpNet>, PolicyError> {
        let mut nets = Vec::new();
        for item in items {
            match item.get_ref() {
                RawItem::File(file) => nets.extend(self.file(file)?),
                RawItem::Text(text) => {
                    match classify(text) {
                        Ok(Entry::Net(net)) => nets.push(net),
                        Ok(Entry::Name(name)) if !names => {
                            return Err(self.src.error(
                            item,
                            format!("'{name}' is not an address or CIDR (a set cannot name another set)"),
                        ));
                        }
                        Ok(Entry::Name(name)) => match self.sets.get(name) {
                            Some(set) => nets.extend_from_slice(set),
                            None => return Err(self.src.error(item, self.unknown(name))),
                        },
                        Err(why) => return Err(self.src.error(item, why)),
                    }
                }
            }
        }
        Ok(dedup(nets))
    }

    /// The resolved sets by name, and the reader with the set files it read.
    pub fn into_parts(self) -> (BTreeMap<String, Vec<IpNet>>, Reader<'k>) {
        (self.sets, self.reader)
    }

    fn unknown(&self, name: &str) -> String {
        if self.sets.is_empty() {
            format!("unknown set '{name}' (no sets are defined in [sets])")
        } else {
            let known: Vec<&str> = self.sets.keys().map(String::as_str).collect();
            format!("unknown set '{name}' (known sets: {})", known.join(", "))
        }
    }

    fn file(&mut self, file: &Spanned<String>) -> Result<Vec<IpNet>, PolicyError> {
        let path = setfile::resolve(self.src.path, file.get_ref());
        if let Some(nets) = self.files.get(&path) {
            return Ok(nets.clone());
        }
        // A set file may list an entry twice (merged block lists do): once is enough.
        let nets = dedup(setfile::load(self.src, &mut self.reader, file)?);
        self.files.insert(path, nets.clone());
        Ok(nets)
    }
}
