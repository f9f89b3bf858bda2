//! The document as a whole: `version`, TOML syntax errors, unknown keys, a BOM, CRLF.

use super::*;
use crate::policy::Mode;

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
         `sets`, `ports`, `sources`, `limits`, `crowdsec`, `protocols`, `egress`; did you mean `ports`?"
    );
    assert_eq!(
        err("version = 1\n[settings]\n  defaults = \"drop\"\n"),
        "policy.toml:3:3: unknown field `defaults`, expected one of `mode`, `default`, \
         `icmp`, `fragments`, `other_protocols`, `return_traffic`; did you mean `default`?"
    );
    assert_eq!(
        err("version = 1\n[[ports]]\nproto = \"tcp\"\nports = [22]\nsource = [\"a\"]\n"),
        "policy.toml:5:1: unknown field `source`, expected one of `proto`, `ports`, `from`, `to`"
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

/// The key an unknown key's error suggests, if any.
fn suggestion(policy: &str) -> Option<String> {
    let e = err(policy);
    assert!(!e.contains('\n'), "{e}");
    let (_, hint) = e.split_once("; did you mean `")?;
    Some(
        hint.strip_suffix("`?")
            .unwrap_or_else(|| panic!("{e}"))
            .to_string(),
    )
}

#[test]
fn misspelled_keys_get_the_closest_key_in_every_table() {
    for (policy, closest) in [
        ("version = 1\n[setings]\n", "settings"),
        ("version = 1\n[Sources]\n", "sources"),
        ("version = 1\n[settings]\nmdoe = \"monitor\"\n", "mode"),
        (
            "version = 1\n[settings]\nreturn_trafic = true\n",
            "return_traffic",
        ),
        (
            "version = 1\n[[ports]]\nproto = \"tcp\"\nport = [80]\n",
            "ports",
        ),
        (
            "version = 1\n[[ports]]\nprto = \"tcp\"\nports = [80]\n",
            "proto",
        ),
        ("version = 1\n[sources]\nalow = []\n", "allow"),
        ("version = 1\n[sources]\ndney = []\n", "deny"),
        ("version = 1\n[limits]\nban_second = 5\n", "ban_seconds"),
        (
            "version = 1\n[limits]\nper_source_syn_burts = 5\n",
            "per_source_syn_burst",
        ),
        ("version = 1\n[sets]\na = { flie = \"a.txt\" }\n", "file"),
        (
            "version = 1\n[sources]\ndeny = [{ files = \"a.txt\" }]\n",
            "file",
        ),
    ] {
        assert_eq!(suggestion(policy).as_deref(), Some(closest), "{policy}");
    }
    // The position and the list of keys stay as they were.
    assert_eq!(
        err("version = 1\n[sources]\nalow = []\n"),
        "policy.toml:3:1: unknown field `alow`, expected `allow` or `deny`; did you mean `allow`?"
    );
}

#[test]
fn a_key_far_from_every_key_gets_no_suggestion() {
    for policy in [
        "version = 1\nbogus = 1\n",
        "version = 1\n[settings]\nip = \"drop\"\n",
        "version = 1\n[[ports]]\nproto = \"tcp\"\nports = [22]\nsource = [\"a\"]\n",
        "version = 1\n[sources]\ntrust = []\n",
        "version = 1\n[limits]\nsyn_rate = 5\n",
        "version = 1\n[sets]\na = { path = \"a.txt\" }\n",
    ] {
        assert_eq!(suggestion(policy), None, "{policy}");
    }
}

#[test]
fn bom_in_the_policy_is_ignored() {
    let p = ok("\u{feff}version = 1\n[settings]\nmode = \"monitor\"\n");
    assert_eq!(p.settings.mode, Mode::Monitor);
    assert_eq!(
        err("\u{feff}version = 1\nbogus = 1\n"),
        "policy.toml:2:1: unknown field `bogus`, expected one of `version`, `settings`, \
         `sets`, `ports`, `sources`, `limits`, `crowdsec`, `protocols`, `egress`"
    );
}

#[test]
fn crlf_policy_positions() {
    assert_eq!(
        err("version = 1\r\n[settings]\r\nmode = \"x\"\r\n"),
        "policy.toml:3:8: mode must be \"enforce\" or \"monitor\", not \"x\""
    );
}
