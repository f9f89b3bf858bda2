//! Deny expiries as the kernel must see them: it reads only the longest matching live deny
//! entry, so each entry carries the latest expiry of itself and every prefix containing it.
//! Otherwise an expired /24 inside a /16 still in force would let the /24's sources through.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::Expiry;

/// Each deny entry with the latest expiry among itself and the entries containing it.
pub fn fold_expiries(deny: &BTreeMap<IpNet, Expiry>) -> BTreeMap<IpNet, Expiry> {
    deny.iter()
        .map(|(net, own)| {
            // A lookup per shorter length: linear in the list, where comparing every pair
            // would take minutes for a script's 100,000 entries.
            let latest = (0..net.prefix_len())
                .filter_map(|len| IpNet::new(net.addr(), len).ok())
                .filter_map(|outer| deny.get(&outer.trunc()))
                .fold(*own, |acc, outer| acc.max(*outer));
            (*net, latest)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: &[(&str, Expiry)]) -> BTreeMap<IpNet, Expiry> {
        entries
            .iter()
            .map(|(n, e)| (n.parse().unwrap(), *e))
            .collect()
    }

    #[test]
    fn an_inner_entry_lives_as_long_as_its_outer_ones() {
        let folded = fold_expiries(&set(&[
            ("10.0.0.0/8", Expiry::At(300)),
            ("10.1.0.0/16", Expiry::At(500)),
            ("10.1.2.0/24", Expiry::At(100)),
            ("10.1.2.3/32", Expiry::At(200)),
        ]));
        assert_eq!(
            folded,
            set(&[
                ("10.0.0.0/8", Expiry::At(300)),
                ("10.1.0.0/16", Expiry::At(500)),
                ("10.1.2.0/24", Expiry::At(500)),
                ("10.1.2.3/32", Expiry::At(500)),
            ])
        );
    }

    #[test]
    fn never_wins_and_a_later_inner_expiry_is_kept() {
        let folded = fold_expiries(&set(&[
            ("0.0.0.0/0", Expiry::Never),
            ("192.0.2.0/24", Expiry::At(50)),
            ("2001:db8::/32", Expiry::At(10)),
            ("2001:db8:1::/48", Expiry::At(90)),
        ]));
        assert_eq!(folded[&"192.0.2.0/24".parse().unwrap()], Expiry::Never);
        assert_eq!(folded[&"2001:db8::/32".parse().unwrap()], Expiry::At(10));
        assert_eq!(folded[&"2001:db8:1::/48".parse().unwrap()], Expiry::At(90));
    }

    #[test]
    fn families_and_siblings_do_not_mix() {
        // ::/0 contains no IPv4 prefix, and 10.2.0.0/16 does not contain 10.1.0.0/24.
        let folded = fold_expiries(&set(&[
            ("::/0", Expiry::Never),
            ("10.2.0.0/16", Expiry::At(900)),
            ("10.1.0.0/24", Expiry::At(5)),
            ("2001:db8::1/128", Expiry::At(7)),
        ]));
        assert_eq!(folded[&"10.1.0.0/24".parse().unwrap()], Expiry::At(5));
        assert_eq!(folded[&"10.2.0.0/16".parse().unwrap()], Expiry::At(900));
        assert_eq!(folded[&"2001:db8::1/128".parse().unwrap()], Expiry::Never);
    }

    #[test]
    fn removing_an_outer_entry_gives_inner_ones_their_own_expiry_back() {
        let mut deny = set(&[
            ("198.51.100.0/24", Expiry::Never),
            ("198.51.100.7/32", Expiry::At(40)),
        ]);
        assert_eq!(
            fold_expiries(&deny)[&"198.51.100.7/32".parse().unwrap()],
            Expiry::Never
        );
        deny.remove(&"198.51.100.0/24".parse().unwrap());
        assert_eq!(
            fold_expiries(&deny),
            set(&[("198.51.100.7/32", Expiry::At(40))])
        );
    }

    #[test]
    fn allow_entries_are_not_part_of_the_fold() {
        // The fold sees only denies; an allowed prefix inside a deny keeps the deny's expiry
        // in the deny trie and wins in the kernel because trusted is judged first.
        let mut live = super::super::LiveSet::default();
        live.allow(&["10.0.0.1/32".parse().unwrap()]);
        live.deny(&["10.0.0.0/8".parse().unwrap()], Expiry::At(60));
        let folded = fold_expiries(&live.deny);
        assert_eq!(folded, set(&[("10.0.0.0/8", Expiry::At(60))]));
    }
}
