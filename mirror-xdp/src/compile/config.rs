//! The config entry: settings as flags, and the `[limits]` as GCRA parameters.

use mirror_xdp_common::{Config, config_flag};

use crate::policy::{Action, Limits, Mode, Policy};

const NS_PER_SEC: u64 = 1_000_000_000;

pub fn config(policy: &Policy, cpus: u32) -> Config {
    let s = &policy.settings;
    let limits = &policy.limits;
    let mut flags = 0;
    let mut set = |on: bool, flag: u32| {
        if on {
            flags |= flag;
        }
    };
    set(s.mode == Mode::Monitor, config_flag::MONITOR);
    set(s.default == Action::Pass, config_flag::DEFAULT_PASS);
    set(s.icmp == Action::Pass, config_flag::ICMP_PASS);
    set(s.fragments == Action::Pass, config_flag::FRAGMENTS_PASS);
    set(s.other_protocols == Action::Pass, config_flag::OTHER_PASS);
    set(s.return_traffic, config_flag::RETURN_TRAFFIC);
    set(limits.per_source_pps > 0, config_flag::LIMIT_PPS);
    set(limits.per_source_syn_rate > 0, config_flag::LIMIT_SYN);
    set(limits.global_syn_rate > 0, config_flag::LIMIT_GLOBAL_SYN);
    set(limits.syn_cookies, config_flag::SYN_COOKIES);

    let (pps_interval_ns, pps_tolerance_ns) =
        bucket(limits.per_source_pps, limits.per_source_burst);
    let (syn_interval_ns, syn_tolerance_ns) =
        bucket(limits.per_source_syn_rate, limits.per_source_syn_burst);
    let (global_syn_interval_ns, global_syn_tolerance_ns) = global_bucket(limits, cpus);
    Config {
        flags,
        prefix_v4: limits.source_prefix_v4,
        prefix_v6: limits.source_prefix_v6,
        _pad: [0; 2],
        clock_override_ns: 0,
        pps_interval_ns,
        pps_tolerance_ns,
        syn_interval_ns,
        syn_tolerance_ns,
        global_syn_interval_ns,
        global_syn_tolerance_ns,
        ban_ns: limits.ban_seconds.saturating_mul(NS_PER_SEC),
    }
}

/// GCRA parameters of a `rate` per second with a `burst` (0: one second's worth).
fn bucket(rate: u64, burst: u64) -> (u64, u64) {
    if rate == 0 {
        return (0, 0);
    }
    let interval = (NS_PER_SEC / rate).max(1);
    let burst = if burst == 0 { rate } else { burst };
    (interval, (burst - 1).saturating_mul(interval))
}

/// The global SYN budget split over the CPUs: each CPU's bucket admits `rate / cpus` SYNs
/// per second with a burst of one second's worth, so together they never exceed `rate`.
fn global_bucket(limits: &Limits, cpus: u32) -> (u64, u64) {
    if limits.global_syn_rate == 0 {
        return (0, 0);
    }
    let per_cpu = (limits.global_syn_rate / cpus.max(1) as u64).max(1);
    bucket(per_cpu, per_cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_admit_rate_per_second_with_burst() {
        assert_eq!(bucket(0, 10), (0, 0));
        // 100/s: one every 10 ms; a burst of 200 tolerates 199 intervals ahead.
        assert_eq!(bucket(100, 200), (10_000_000, 1_990_000_000));
        // No burst given: one second's worth.
        assert_eq!(bucket(100, 0), (10_000_000, 990_000_000));
        // Faster than 1 ns per token is capped at 1 ns.
        assert_eq!(bucket(2_000_000_000, 1).0, 1);
    }

    #[test]
    fn syn_cookies_set_their_flag() {
        let text = "version = 1\n[limits]\nglobal_syn_rate = 50\nsyn_cookies = true\n";
        let policy = Policy::parse(text, std::path::Path::new("p.toml")).unwrap();
        let flags = config(&policy, 1).flags;
        assert_ne!(flags & config_flag::SYN_COOKIES, 0);
        let policy = Policy::parse("version = 1\n", std::path::Path::new("p.toml")).unwrap();
        assert_eq!(config(&policy, 1).flags & config_flag::SYN_COOKIES, 0);
    }

    #[test]
    fn global_budget_is_split_over_cpus() {
        let limits = Limits {
            global_syn_rate: 100_000,
            ..Limits::default()
        };
        assert_eq!(global_bucket(&limits, 2), bucket(50_000, 50_000));
        assert_eq!(global_bucket(&limits, 1), bucket(100_000, 100_000));
    }
}
