//! The policy file's shape as TOML gives it: every value kept with its position, unvalidated.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor, value::MapAccessDeserializer};
use toml::Spanned;

/// Only `version`, read before anything else so a future version gets a clear message.
#[derive(Deserialize)]
pub(super) struct RawVersion {
    pub version: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    /// Checked through [`RawVersion`].
    #[serde(rename = "version")]
    _version: Option<de::IgnoredAny>,
    #[serde(default)]
    pub settings: RawSettings,
    #[serde(default)]
    pub sets: BTreeMap<Spanned<String>, Spanned<RawSetDef>>,
    #[serde(default)]
    pub ports: Vec<Spanned<RawRule>>,
    #[serde(default)]
    pub sources: RawSources,
    #[serde(default)]
    pub limits: RawLimits,
    pub crowdsec: Option<RawCrowdsec>,
    #[serde(default)]
    pub protocols: Vec<Spanned<RawProtocolRule>>,
    #[serde(default)]
    pub egress: RawEgress,
}

/// `[egress]` and its `[[egress.ports]]` tables.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEgress {
    pub default: Option<Spanned<String>>,
    #[serde(default)]
    pub ports: Vec<Spanned<RawEgressRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEgressRule {
    pub proto: Option<Spanned<String>>,
    pub ports: Option<Spanned<Vec<Spanned<RawPort>>>>,
    pub to: Option<RawList>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    pub mode: Option<Spanned<String>>,
    pub default: Option<Spanned<String>>,
    pub icmp: Option<Spanned<String>>,
    pub fragments: Option<Spanned<String>>,
    pub other_protocols: Option<Spanned<String>>,
    pub return_traffic: Option<bool>,
}

/// A list of address items, with the position of the whole array.
pub(super) type RawList = Spanned<Vec<Spanned<RawItem>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub proto: Option<Spanned<String>>,
    pub ports: Option<Spanned<Vec<Spanned<RawPort>>>>,
    pub from: Option<RawList>,
    pub to: Option<RawList>,
}

/// One `[[protocols]]` table: its protocols are names or numbers, as [`RawPort`] reads them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProtocolRule {
    pub protocols: Option<Spanned<Vec<Spanned<RawPort>>>>,
    pub from: Option<RawList>,
    pub to: Option<RawList>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSources {
    pub allow: Option<RawList>,
    pub deny: Option<RawList>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub per_source_pps: Option<Spanned<Int>>,
    pub per_source_burst: Option<Spanned<Int>>,
    pub per_source_syn_rate: Option<Spanned<Int>>,
    pub per_source_syn_burst: Option<Spanned<Int>>,
    pub global_syn_rate: Option<Spanned<Int>>,
    pub ban_seconds: Option<Spanned<Int>>,
    pub source_prefix_v4: Option<Spanned<Int>>,
    pub source_prefix_v6: Option<Spanned<Int>>,
    pub syn_cookies: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCrowdsec {
    pub url: Spanned<String>,
    pub api_key_file: Spanned<String>,
    pub poll_interval: Option<Spanned<String>>,
    pub scopes: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A TOML integer (any sign: the range is checked later, with a better message).
pub(super) struct Int(pub i64);

/// `{ file = "..." }`: a file of addresses, relative to the policy file's folder.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRef {
    pub file: Spanned<String>,
}

/// One `[sets]` value: an array of items, or a file.
pub(super) enum RawSetDef {
    List(Vec<Spanned<RawItem>>),
    File(Spanned<String>),
}

/// One item of an address list: a string (address, CIDR or set name) or a file.
pub(super) enum RawItem {
    Text(String),
    File(Spanned<String>),
}

/// One entry of `ports`: a number, or a string "lo-hi" / "n".
pub(super) enum RawPort {
    Number(i64),
    Text(String),
}

fn file_ref<'de, A: MapAccess<'de>>(map: A) -> Result<Spanned<String>, A::Error> {
    Ok(FileRef::deserialize(MapAccessDeserializer::new(map))?.file)
}

impl<'de> Deserialize<'de> for RawSetDef {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawSetDef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of addresses, CIDRs and files, or { file = \"...\" }")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawSetDef, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(RawSetDef::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawSetDef, A::Error> {
                file_ref(map).map(RawSetDef::File)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawItem {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawItem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address, CIDR or set name string, or { file = \"...\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawItem, E> {
                Ok(RawItem::Text(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawItem, A::Error> {
                file_ref(map).map(RawItem::File)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                Ok(Int(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawPort {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawPort;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number or a \"lo-hi\" range string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPort, E> {
                Ok(RawPort::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPort, E> {
                Ok(RawPort::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPort, E> {
                Ok(RawPort::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
