//! `[settings]` and `[limits]`: defaults, every value, and bad values with positions.

use super::*;
use crate::policy::{Action, Limits, Mode, Settings};

#[test]
fn minimal_policy_takes_the_defaults() {
    let p = ok("version = 1\n");
    assert_eq!(p.settings, Settings::default());
    assert_eq!(p.rules, vec![]);
    assert_eq!(p.allow, vec![]);
    assert_eq!(p.deny, vec![]);
    assert_eq!(p.limits, Limits::default());
    assert_eq!(p.path, Path::new("policy.toml"));
}

#[test]
fn settings_other_than_the_defaults() {
    let p = ok(r#"version = 1
[settings]
mode = "monitor"
default = "pass"
icmp = "drop"
fragments = "drop"
other_protocols = "pass"
return_traffic = false
"#);
    assert_eq!(
        p.settings,
        Settings {
            mode: Mode::Monitor,
            default: Action::Pass,
            icmp: Action::Drop,
            fragments: Action::Drop,
            other_protocols: Action::Pass,
            return_traffic: false,
        }
    );
    let p = ok("version = 1\n[settings]\nicmp = \"drop\"\n");
    assert_eq!(
        p.settings,
        Settings {
            icmp: Action::Drop,
            ..Settings::default()
        }
    );
}

#[test]
fn bad_setting_values() {
    let s = "version = 1\n[settings]\n";
    assert_eq!(
        err(&format!("{s}mode = \"block\"\n")),
        "policy.toml:3:8: mode must be \"enforce\" or \"monitor\", not \"block\""
    );
    for key in ["default", "icmp", "fragments", "other_protocols"] {
        assert_eq!(
            err(&format!("{s}{key} = \"Drop\"\n")),
            format!(
                "policy.toml:3:{}: {key} must be \"pass\" or \"drop\", not \"Drop\"",
                key.len() + 4
            )
        );
    }
    assert_eq!(
        err(&format!("{s}mode = 5\n")),
        "policy.toml:3:8: invalid type: integer `5`, expected a string"
    );
    assert_eq!(
        err(&format!("{s}return_traffic = \"yes\"\n")),
        "policy.toml:3:18: invalid type: string \"yes\", expected a boolean"
    );
}

#[test]
fn limits() {
    let p = ok("version = 1\n[limits]\nper_source_burst = 10\nsource_prefix_v6 = 128\n");
    assert_eq!(
        p.limits,
        Limits {
            per_source_burst: 10,
            source_prefix_v6: 128,
            ..Limits::default()
        }
    );
    assert_eq!(p.limits.enabled(), Vec::<&str>::new());
    let p = ok("version = 1\n[limits]\nper_source_pps = 0\nsource_prefix_v4 = 1\n");
    assert_eq!(p.limits.per_source_pps, 0);
    assert_eq!(p.limits.source_prefix_v4, 1);

    let l = "version = 1\n[limits]\n";
    assert_eq!(
        err(&format!("{l}ban_seconds = -1\n")),
        "policy.toml:3:15: ban_seconds must not be negative (0 or leaving it out turns it off)"
    );
    assert_eq!(
        err(&format!("{l}source_prefix_v4 = 0\n")),
        "policy.toml:3:20: source_prefix_v4 must be 1-32, not 0"
    );
    assert_eq!(
        err(&format!("{l}source_prefix_v4 = 33\n")),
        "policy.toml:3:20: source_prefix_v4 must be 1-32, not 33"
    );
    assert_eq!(
        err(&format!("{l}source_prefix_v6 = 129\n")),
        "policy.toml:3:20: source_prefix_v6 must be 1-128, not 129"
    );
    assert_eq!(
        err(&format!("{l}source_prefix_v6 = -64\n")),
        "policy.toml:3:20: source_prefix_v6 must be 1-128, not -64"
    );
    assert_eq!(
        err(&format!("{l}per_source_pps = 1.5\n")),
        "policy.toml:3:18: invalid type: floating point `1.5`, expected a whole number"
    );
    assert_eq!(
        err(&format!("{l}global_syn_rate = \"100k\"\n")),
        "policy.toml:3:19: invalid type: string \"100k\", expected a whole number"
    );
}

#[test]
fn syn_cookies_need_a_syn_limit() {
    let l = "version = 1\n[limits]\n";
    let p = ok(&format!("{l}global_syn_rate = 50\nsyn_cookies = true\n"));
    assert!(p.limits.syn_cookies);
    assert_eq!(p.limits.enabled(), ["global_syn_rate", "syn_cookies"]);
    assert_eq!(
        err(&format!("{l}syn_cookies = true\nper_source_syn_rate = 5\n")),
        "policy.toml:3:15: syn_cookies needs global_syn_rate: cookies answer the SYNs over \
         the global budget"
    );
    // Off needs nothing; absent is off.
    assert!(!ok(&format!("{l}syn_cookies = false\n")).limits.syn_cookies);
    assert!(!ok(l).limits.syn_cookies);
    assert_eq!(
        err(&format!("{l}per_source_pps = 10\nsyn_cookies = true\n")),
        "policy.toml:4:15: syn_cookies needs global_syn_rate: cookies answer the SYNs over \
         the global budget"
    );
    assert_eq!(
        err(&format!("{l}syn_cookies = 1\n")),
        "policy.toml:3:15: invalid type: integer `1`, expected a boolean"
    );
}
