//! "did you mean `default`?" for a misspelled key: serde names the unknown key and the keys
//! its table accepts; the closest of those, if close enough, is the suggestion.

/// The hint for an "unknown field `x`, expected ..." message, e.g. "did you mean `ports`?";
/// `None` for any other message or a key close to none.
pub(super) fn unknown_key_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (typo, rest) = rest.split_once('`')?;
    let (_, expected) = rest.split_once(", expected ")?;
    // Names are the backquoted words: "`a`", "`a` or `b`", "one of `a`, `b`, ...".
    let keys = expected.split('`').skip(1).step_by(2);
    closest(typo, keys).map(|key| format!("did you mean `{key}`?"))
}

/// The candidate nearest to `typo` (the first on a tie), within a third of its length (as
/// rustc does: one edit in a short key, more in a long one); case is ignored.
fn closest<'a>(typo: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let typo = typo.to_lowercase();
    let len = typo.chars().count();
    let limit = len.max(3) / 3;
    candidates
        // The lengths alone rule most keys out, and bound the work for a hostile long key.
        .filter(|key| key.chars().count().abs_diff(len) <= limit)
        .map(|key| (distance(&typo, &key.to_lowercase()), key))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, key)| key)
}

/// Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`: the
/// optimal string alignment distance, so "mdoe" is one edit from "mode".
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // rows[i][j]: the distance between the first i chars of a and the first j of b.
    let mut rows = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    rows[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_each_kind_of_edit_once() {
        assert_eq!(distance("mode", "mode"), 0);
        assert_eq!(distance("mod", "mode"), 1);
        assert_eq!(distance("modes", "mode"), 1);
        assert_eq!(distance("mide", "mode"), 1);
        assert_eq!(distance("mdoe", "mode"), 1);
        assert_eq!(distance("", "mode"), 4);
        assert_eq!(distance("path", "file"), 4);
    }

    #[test]
    fn every_shape_of_serde_message_is_read() {
        let hint = |m| unknown_key_hint(m);
        assert_eq!(
            hint("unknown field `fiel`, expected `file`").as_deref(),
            Some("did you mean `file`?")
        );
        assert_eq!(
            hint("unknown field `dney`, expected `allow` or `deny`").as_deref(),
            Some("did you mean `deny`?")
        );
        assert_eq!(
            hint("unknown field `sets_`, expected one of `settings`, `sets`").as_deref(),
            Some("did you mean `sets`?")
        );
        assert_eq!(hint("unknown field `x`, there are no fields"), None);
        assert_eq!(hint("missing field `file`"), None);
    }

    #[test]
    fn the_nearest_key_wins_and_ties_go_to_the_first() {
        let keys = ["sources", "source_prefix"];
        assert_eq!(closest("sourcex", keys.into_iter()), Some("sources"));
        assert_eq!(closest("ab", ["ac", "ad"].into_iter()), Some("ac"));
    }

    #[test]
    fn a_huge_key_is_not_compared() {
        let typo = "x".repeat(1 << 20);
        assert_eq!(closest(&typo, ["mode"].into_iter()), None);
    }
}
