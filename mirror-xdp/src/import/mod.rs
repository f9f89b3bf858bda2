//! `mirror-xdp import`: a rule set of iptables, ufw or nftables read into a
//! neutral [`ruleset::Ruleset`], then written out as a policy. Every rule the policy cannot
//! express, and every difference the policy will have, is a [`Problem`] with its line.

mod iptables;
mod nft;
mod ruleset;
mod translate;
mod ufw;

pub use ruleset::Problem;

/// The firewalls whose rule sets `import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `iptables-save` and `ip6tables-save` output, with `ipset save` output for sets.
    Iptables,
    /// ufw's `user.rules` and `user6.rules` (one after the other in one input is fine), or
    /// `ufw show added`.
    Ufw,
    /// `nft list ruleset` output.
    Nft,
}

pub struct Imported {
    /// The policy file's text.
    pub policy: String,
    /// Sorted by line.
    pub problems: Vec<Problem>,
}

/// Reads `text` (named `input_name` in the policy's header comment).
pub fn import(format: Format, text: &str, input_name: &str) -> Imported {
    let (set, mut problems) = match format {
        Format::Iptables => iptables::read(text, &["INPUT"]),
        Format::Ufw => ufw::read(text),
        Format::Nft => nft::read(text),
    };
    let translated = translate::translate(&set, input_name);
    problems.extend(translated.problems);
    problems.sort_by_key(|p| p.line);
    Imported {
        policy: translated.policy,
        problems,
    }
}

#[cfg(test)]
mod tests;
