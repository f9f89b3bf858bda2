//! The tiered source entries: random sets against the brute-force reference and the
//! kernel's walk, edge cases by hand, and (ignored) timings of large lists.

mod oracle;

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use ipnet::{Ipv4Net, Ipv6Net};
use mirror_xdp_common::source_flag::{DENIED, TRUSTED};

use super::{tiers_v4, tiers_v6};
use oracle::*;

#[test]
fn random_v4_sets_walk_to_the_flags_of_all_containing_prefixes() {
    let mut rng = Rng(0x5eed_0004);
    for _ in 0..2000 {
        let prefixes = random_v4_set(&mut rng);
        let entries = check_v4(&mut rng, &prefixes);
        assert_eq!(entries, reference_v4(&prefixes), "{prefixes:?}");
    }
}

#[test]
fn random_v6_sets_walk_to_the_flags_of_all_containing_prefixes() {
    let mut rng = Rng(0x5eed_0006);
    for _ in 0..1000 {
        let prefixes = random_v6_set(&mut rng);
        check_v6(&mut rng, &prefixes);
    }
}

#[test]
fn empty_lists_give_no_entries() {
    assert!(tiers_v4(&[]).is_empty());
    assert_eq!(tiers_v6(&[]), (Vec::new(), 0));
}

#[test]
fn a_v4_slash_0_fills_the_first_tier() {
    let mut rng = Rng(1);
    let prefixes = [(v4("0.0.0.0/0"), DENIED), (v4("192.0.2.7/32"), TRUSTED)];
    let entries = check_v4(&mut rng, &prefixes);
    // 256 /8 blocks, and the chain down to the /32 below one of them.
    assert_eq!(entries.len(), 256 + 3);
    assert!(entries[..256].iter().all(|(k, _)| k.tier == 8));
    let map: HashMap<_, _> = entries.into_iter().collect();
    assert_eq!(map[&k4(8, "10.0.0.0")], entry(DENIED, 0));
    assert_eq!(map[&k4(8, "192.0.0.0")], entry(DENIED, 16));
    assert_eq!(map[&k4(16, "192.0.0.0")], entry(DENIED, 24));
    assert_eq!(map[&k4(24, "192.0.2.0")], entry(DENIED, 32));
    assert_eq!(map[&k4(32, "192.0.2.7")], entry(DENIED | TRUSTED, 0));
    assert_eq!(walk_v4(&map, "192.0.2.8".parse().unwrap()), DENIED);
}

#[test]
fn a_v6_slash_0_fills_the_first_tier() {
    let mut rng = Rng(2);
    let prefixes = [(v6("::/0"), TRUSTED), (v6("2001:db8::1/128"), DENIED)];
    let (entries, first) = check_v6(&mut rng, &prefixes);
    // 16 /4 blocks, the one holding the /128 leading straight to it.
    assert_eq!((entries.len(), first), (16 + 1, 4));
    let map: HashMap<_, _> = entries.into_iter().collect();
    assert_eq!(map[&k6(4, "2000::")], entry(TRUSTED, 128));
    assert_eq!(map[&k6(128, "2001:db8::1")], entry(TRUSTED | DENIED, 0));
}

#[test]
fn a_slash_32_alone_is_a_chain_of_four() {
    let mut rng = Rng(3);
    let entries = check_v4(&mut rng, &[(v4("198.51.100.9/32"), DENIED)]);
    assert_eq!(
        entries,
        vec![
            (k4(8, "198.0.0.0"), entry(0, 16)),
            (k4(16, "198.51.0.0"), entry(0, 24)),
            (k4(24, "198.51.100.0"), entry(0, 32)),
            (k4(32, "198.51.100.9"), entry(DENIED, 0)),
        ]
    );
}

#[test]
fn a_slash_128_alone_is_one_entry_and_one_lookup() {
    let mut rng = Rng(4);
    let (entries, first) = check_v6(&mut rng, &[(v6("2001:db8::5/128"), TRUSTED)]);
    assert_eq!(entries, vec![(k6(128, "2001:db8::5"), entry(TRUSTED, 0))]);
    assert_eq!(first, 128);
}

/// IPv6 tiers every 4 bits: a prefix of any length is at most 8 entries (a /33 with 8-bit
/// tiers was 128 /40s: a million IPv6 prefixes of random lengths made 5 million entries).
#[test]
fn a_v6_prefix_is_at_most_eight_entries() {
    let mut rng = Rng(12);
    for (net, count) in [
        ("2a00::/33", 8),
        ("2a00::/35", 2),
        ("2a00::/36", 1),
        ("2a00::/125", 8),
    ] {
        let (entries, first) = check_v6(&mut rng, &[(v6(net), DENIED)]);
        assert_eq!(entries.len(), count, "{net}");
        assert_eq!(
            u32::from(first),
            u32::from(v6(net).prefix_len()).div_ceil(4) * 4
        );
    }
}

/// A walk takes a step per nesting level, markers included: here 24 prefixes that each
/// leave the path to one address a nibble further down need 25 steps with 4-bit tiers,
/// more than the program takes; the list gets 8-bit tiers, where no walk takes more.
#[test]
fn a_list_nested_deeper_than_the_walk_gets_8_bit_tiers() {
    let mut rng = Rng(13);
    let path: u128 = 0x2a00_1234_5678_9abc_def0_1234_5678_9abc;
    let mut prefixes: Vec<(Ipv6Net, u8)> = (1..=24u8)
        .map(|k| {
            let len = 4 * k;
            let aside = path ^ 1 << (128 - u32::from(len));
            let net = Ipv6Net::new(Ipv6Addr::from(aside), len).unwrap().trunc();
            (net, DENIED)
        })
        .collect();
    prefixes.push((Ipv6Net::new(Ipv6Addr::from(path), 128).unwrap(), TRUSTED));
    let (entries, first) = check_v6(&mut rng, &prefixes);
    assert!(entries.iter().all(|(k, _)| k.tier % 8 == 0), "8-bit tiers");
    let map: HashMap<_, _> = entries.into_iter().collect();
    let (flags, steps) = walk_v6(&map, first, Ipv6Addr::from(path));
    assert_eq!(flags, TRUSTED);
    assert!(
        steps <= mirror_xdp_common::sources::TIER_STEPS_V6,
        "{steps}"
    );
    // Nested less deeply, the same kind of list keeps 4-bit tiers.
    let (entries, _) = check_v6(&mut rng, &prefixes[12..]);
    assert!(entries.iter().any(|(k, _)| k.tier % 8 == 4), "4-bit tiers");
}

/// The case that made every IPv6 packet cost a walk down from tier 8: one /48 in the list.
#[test]
fn a_slash_48_costs_any_other_address_one_lookup() {
    let mut rng = Rng(8);
    let (entries, first) = check_v6(&mut rng, &[(v6("2001:db8:dead::/48"), DENIED)]);
    let map: HashMap<_, _> = entries.into_iter().collect();
    for (addr, flags) in [
        ("2001:db8:1::2", 0),
        ("2001:db8:dead:1::9", DENIED),
        ("fe80::1", 0),
    ] {
        assert_eq!(
            walk_v6(&map, first, addr.parse().unwrap()),
            (flags, 1),
            "{addr}"
        );
    }
}

#[test]
fn an_allow_inside_a_deny_gets_both_and_the_rest_only_deny() {
    let mut rng = Rng(5);
    let prefixes = [
        (v4("198.51.0.0/16"), DENIED),
        (v4("198.51.100.0/24"), TRUSTED),
        (v4("198.51.100.128/25"), DENIED),
    ];
    let entries = check_v4(&mut rng, &prefixes);
    let map: HashMap<_, _> = entries.into_iter().collect();
    let walk = |s: &str| walk_v4(&map, s.parse().unwrap());
    assert_eq!(walk("198.51.1.1"), DENIED);
    assert_eq!(walk("198.51.100.1"), DENIED | TRUSTED);
    assert_eq!(walk("198.51.100.200"), DENIED | TRUSTED);
    assert_eq!(walk("198.52.0.1"), 0);
    assert_eq!(map[&k4(16, "198.51.0.0")], entry(DENIED, 24));
    assert_eq!(map[&k4(24, "198.51.100.0")], entry(DENIED | TRUSTED, 32));
    assert_eq!(map[&k4(32, "198.51.100.200")], entry(DENIED | TRUSTED, 0));
    assert!(!map.contains_key(&k4(32, "198.51.100.1")));
}

#[test]
fn an_allow_v6_inside_a_deny_gets_both() {
    let mut rng = Rng(6);
    let prefixes = [
        (v6("2001:db8::/32"), DENIED),
        (v6("2001:db8:1::/48"), TRUSTED),
        (v6("2001:db8:1:2::/63"), DENIED),
    ];
    let (entries, first) = check_v6(&mut rng, &prefixes);
    let map: HashMap<_, _> = entries.iter().copied().collect();
    let walk = |s: &str| walk_v6(&map, first, s.parse().unwrap());
    assert_eq!(walk("2001:db8:2::1"), (DENIED, 2));
    assert_eq!(walk("2001:db8:1::1"), (DENIED | TRUSTED, 2));
    assert_eq!(walk("2001:db8:1:3::1"), (DENIED | TRUSTED, 2));
    assert_eq!(walk("2001:db9::1"), (0, 1));
    // The /63 deny inside the allow changes nothing there: it gets no entry.
    assert_eq!(
        entries,
        vec![
            (k6(32, "2001:db8::"), entry(DENIED, 48)),
            (k6(48, "2001:db8:1::"), entry(DENIED | TRUSTED, 0)),
        ]
    );
}

/// Prefixes under different /32s, one listed and one not: the walk reaches the /48 under
/// the unlisted /32 through a marker with no flags.
#[test]
fn a_marker_leads_to_a_longer_prefix_under_an_unlisted_block() {
    let mut rng = Rng(9);
    let prefixes = [
        (v6("2001:db8::/32"), DENIED),
        (v6("2001:0:1::/48"), DENIED),
        (v6("2001:db8:7::/48"), TRUSTED),
    ];
    let (entries, first) = check_v6(&mut rng, &prefixes);
    assert_eq!(first, 32);
    let map: HashMap<_, _> = entries.iter().copied().collect();
    assert_eq!(map[&k6(32, "2001::")], entry(0, 48));
    assert_eq!(
        walk_v6(&map, first, "2001:0:1::5".parse().unwrap()),
        (DENIED, 2)
    );
    assert_eq!(walk_v6(&map, first, "2001:0:2::5".parse().unwrap()), (0, 2));
    assert_eq!(walk_v6(&map, first, "2001:1::5".parse().unwrap()), (0, 1));
}

#[test]
fn duplicates_merge_into_one_entry() {
    let mut rng = Rng(7);
    let prefixes = [
        (v4("203.0.113.0/24"), DENIED),
        (v4("203.0.113.0/24"), DENIED),
        (v4("203.0.113.0/24"), TRUSTED),
    ];
    let entries = check_v4(&mut rng, &prefixes);
    assert_eq!(entries.len(), 3);
    assert_eq!(
        entries[2],
        (k4(24, "203.0.113.0"), entry(DENIED | TRUSTED, 0))
    );
}

#[test]
fn a_slash_7_is_two_slash_8_blocks() {
    let mut rng = Rng(8);
    let entries = check_v4(&mut rng, &[(v4("10.0.0.0/7"), DENIED)]);
    assert_eq!(
        entries,
        vec![
            (k4(8, "10.0.0.0"), entry(DENIED, 0)),
            (k4(8, "11.0.0.0"), entry(DENIED, 0)),
        ]
    );
}

#[test]
fn a_slash_9_is_128_slash_16_blocks_under_a_flagless_slash_8() {
    let mut rng = Rng(9);
    let entries = check_v4(&mut rng, &[(v4("10.128.0.0/9"), TRUSTED)]);
    assert_eq!(entries.len(), 129);
    assert_eq!(entries[0], (k4(8, "10.0.0.0"), entry(0, 16)));
    assert_eq!(entries[1], (k4(16, "10.128.0.0"), entry(TRUSTED, 0)));
    assert_eq!(entries[128], (k4(16, "10.255.0.0"), entry(TRUSTED, 0)));
}

#[test]
fn a_slash_25_under_a_slash_24() {
    let mut rng = Rng(10);
    let prefixes = [(v4("192.0.2.0/24"), DENIED), (v4("192.0.2.0/25"), TRUSTED)];
    let entries = check_v4(&mut rng, &prefixes);
    assert_eq!(entries.len(), 3 + 128);
    let map: HashMap<_, _> = entries.into_iter().collect();
    assert_eq!(map[&k4(24, "192.0.2.0")], entry(DENIED, 32));
    assert_eq!(map[&k4(32, "192.0.2.127")], entry(DENIED | TRUSTED, 0));
    assert!(!map.contains_key(&k4(32, "192.0.2.128")));
    assert_eq!(walk_v4(&map, "192.0.2.200".parse().unwrap()), DENIED);
}

#[test]
fn prefixes_of_one_tier_nested_in_each_other() {
    // A /17 and a /20 inside it both expand to /24 blocks: the /20's blocks carry both.
    let mut rng = Rng(11);
    let prefixes = [
        (v4("10.1.0.0/17"), DENIED),
        (v4("10.1.16.0/20"), TRUSTED),
        (v4("10.1.17.0/24"), DENIED),
    ];
    let entries = check_v4(&mut rng, &prefixes);
    assert_eq!(entries.len(), 2 + 128);
    let map: HashMap<_, _> = entries.into_iter().collect();
    assert_eq!(map[&k4(24, "10.1.15.0")], entry(DENIED, 0));
    assert_eq!(map[&k4(24, "10.1.16.0")], entry(DENIED | TRUSTED, 0));
    assert_eq!(map[&k4(24, "10.1.17.0")], entry(DENIED | TRUSTED, 0));
}

/// 1,000,000 IPv4 prefixes like a large deny list: half /32, a third /24, the rest
/// /16../23. Run with `cargo test --release -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run in release"]
fn timing_1m_v4() {
    let mut rng = Rng(42);
    let prefixes: Vec<(Ipv4Net, u8)> = (0..1_000_000)
        .map(|_| {
            let roll = rng.below(6);
            let len = match roll {
                0..=2 => 32,
                3 | 4 => 24,
                _ => 16 + rng.below(8) as u8,
            };
            let net = Ipv4Net::new(Ipv4Addr::from(rng.next() as u32), len).unwrap();
            (
                net.trunc(),
                if rng.below(10) == 0 { TRUSTED } else { DENIED },
            )
        })
        .collect();
    let start = Instant::now();
    let entries = tiers_v4(&prefixes);
    let took = start.elapsed();
    println!(
        "tiers_v4: 1,000,000 prefixes -> {} entries in {took:?}",
        entries.len()
    );
    let map: HashMap<_, _> = entries.into_iter().collect();
    for (net, _) in prefixes.iter().take(200) {
        let addr = net.network();
        assert_eq!(walk_v4(&map, addr), expect_v4(&prefixes, addr));
    }
}

/// 100,000 IPv6 prefixes: half /32../64, half /128.
#[test]
#[ignore = "timing; run in release"]
fn timing_100k_v6() {
    let mut rng = Rng(43);
    let prefixes: Vec<(Ipv6Net, u8)> = (0..100_000)
        .map(|_| {
            let len = if rng.below(2) == 0 {
                128
            } else {
                32 + rng.below(33) as u8
            };
            let net = Ipv6Net::new(Ipv6Addr::from(rng.u128()), len).unwrap();
            (
                net.trunc(),
                if rng.below(10) == 0 { TRUSTED } else { DENIED },
            )
        })
        .collect();
    let start = Instant::now();
    let (entries, first) = tiers_v6(&prefixes);
    let took = start.elapsed();
    println!(
        "tiers_v6: 100,000 prefixes -> {} entries in {took:?}",
        entries.len()
    );
    let map: HashMap<_, _> = entries.into_iter().collect();
    for (net, _) in prefixes.iter().take(200) {
        let addr = net.network();
        assert_eq!(walk_v6(&map, first, addr).0, expect_v6(&prefixes, addr));
    }
}
