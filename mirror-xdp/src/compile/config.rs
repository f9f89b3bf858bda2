//! The config entry: settings as flags, and the `[limits]` as GCRA parameters.

use mirror_xdp_common::{Config, config_flag};

use crate::policy::{Action, Mode, Policy, PolicyError};

const NS_PER_SEC: u64 = 1_000_000_000;

/// The config of `policy` on a machine with `cpus` possible CPUs. Refuses a
/// `global_syn_rate` the CPUs cannot keep to ([`global_bucket`]).
pub fn config(policy: &Policy, cpus: u32) -> Result<Config, PolicyError> {
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
    set(
        policy.egress.default == Action::Drop,
        config_flag::EGRESS_DROP,
    );

    let (pps_interval_ns, pps_tolerance_ns) =
        bucket(limits.per_source_pps, limits.per_source_burst);
    let (syn_interval_ns, syn_tolerance_ns) =
        bucket(limits.per_source_syn_rate, limits.per_source_syn_burst);
    let (global_syn_interval_ns, global_syn_tolerance_ns) =
        global_bucket(limits.global_syn_rate, cpus).map_err(|message| {
            let (line, column) = policy.global_syn_rate_at.unwrap_or((0, 0));
            PolicyError::new(&policy.path, line, column, message)
        })?;
    Ok(Config {
        flags,
        prefix_v4: limits.source_prefix_v4,
        prefix_v6: limits.source_prefix_v6,
        // Set with the IPv6 lists (`compile`).
        first_tier_v6: 0,
        blocks_v6_half_bits: 0,
        // Set from the host's sysctls when the policy is put in force (see `lifecycle`).
        cookie_options: 0,
        cookie_wscale: 0,
        _pad: [0; 6],
        clock_override_ns: 0,
        pps_interval_ns,
        pps_tolerance_ns,
        syn_interval_ns,
        syn_tolerance_ns,
        global_syn_interval_ns,
        global_syn_tolerance_ns,
        ban_ns: limits.ban_seconds.saturating_mul(NS_PER_SEC),
    })
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

/// The global SYN budget of `rate` per second split over `cpus` buckets, one per CPU (the
/// kernel side spends it per CPU, without locks). Each admits one SYN every `cpus / rate`
/// seconds (rounded up to the nanosecond) with a burst of `rate / cpus` (rounded down), so all together
/// never admit more than `rate` per second nor a burst above `rate`. A CPU admits whole
/// SYNs: with fewer SYNs per second than CPUs, each CPU could still let one through at once
/// and the budget would not hold, so such a rate is refused.
fn global_bucket(rate: u64, cpus: u32) -> Result<(u64, u64), String> {
    if rate == 0 {
        return Ok((0, 0));
    }
    let cpus = u64::from(cpus.max(1));
    if rate < cpus {
        return Err(format!(
            "global_syn_rate = {rate} is below the {cpus} CPUs this machine may run the \
             program on: the budget is split over the CPUs and each admits whole SYNs, so \
             up to {cpus} could pass in a second; set it to at least {cpus}, or 0 (off)"
        ));
    }
    let interval = (u128::from(cpus) * u128::from(NS_PER_SEC)).div_ceil(u128::from(rate));
    let interval = u64::try_from(interval).expect("at most 1 s, since rate >= cpus");
    let burst = rate / cpus;
    Ok((interval, (burst - 1).saturating_mul(interval)))
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
        let flags = config(&policy, 1).unwrap().flags;
        assert_ne!(flags & config_flag::SYN_COOKIES, 0);
        let policy = Policy::parse("version = 1\n", std::path::Path::new("p.toml")).unwrap();
        assert_eq!(
            config(&policy, 1).unwrap().flags & config_flag::SYN_COOKIES,
            0
        );
    }

    /// A GCRA bucket run at the kernel's rules ([`gcra`] in the eBPF crate): how many of
    /// `offered` evenly spread SYNs within `window_ns` conform, starting full.
    fn admitted(interval: u64, tolerance: u64, offered: u64, window_ns: u64) -> u64 {
        let mut tat = 0u64;
        let mut admitted = 0;
        for i in 0..offered {
            let now = 1 + i * window_ns / offered;
            let start = tat.max(now);
            if start - now <= tolerance {
                tat = start + interval;
                admitted += 1;
            }
        }
        admitted
    }

    #[test]
    fn global_budget_is_split_exactly_over_cpus() {
        // 100,000/s on 2 CPUs: 50,000/s each, one every 20 us, burst 50,000.
        assert_eq!(global_bucket(100_000, 2), Ok((20_000, 49_999 * 20_000)));
        assert_eq!(global_bucket(100_000, 1), Ok((10_000, 99_999 * 10_000)));
        // 3/s on 2 CPUs: 1.5/s each (one every 666,666,667 ns), burst 1 each.
        assert_eq!(global_bucket(3, 2), Ok((666_666_667, 0)));
        assert_eq!(global_bucket(0, 64), Ok((0, 0)));
        // Every CPU flooded for 10 s: together within the rate and its one-second burst.
        for (rate, cpus) in [(3, 2), (7, 7), (100, 3), (1_000, 64)] {
            let (interval, tolerance) = global_bucket(rate, cpus).unwrap();
            let each = admitted(interval, tolerance, 1_000_000, 10 * NS_PER_SEC);
            let total = each * u64::from(cpus);
            assert!(
                total <= 11 * rate && total >= 10 * rate - u64::from(cpus),
                "{rate}/s on {cpus} CPUs admitted {total} in 10 s"
            );
        }
    }

    #[test]
    fn a_global_rate_below_the_cpu_count_is_refused_where_it_is_set() {
        let text = "version = 1\n\n[limits]\nglobal_syn_rate = 3\n";
        let policy = Policy::parse(text, std::path::Path::new("p.toml")).unwrap();
        let err = config(&policy, 4).unwrap_err();
        assert_eq!((err.line, err.column), (4, 19));
        assert!(
            err.to_string().starts_with(
                "p.toml:4:19: global_syn_rate = 3 is below the 4 CPUs this machine may run"
            ),
            "{err}"
        );
        assert!(err.message.contains("set it to at least 4"), "{err}");
        assert!(config(&policy, 3).is_ok());
    }
}
