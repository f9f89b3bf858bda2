//! `mirror-xdp.toml(5)`, the policy format's page: the README's policy reference (between
//! its marker comments) turned from the little markdown it uses into roff. One text for both,
//! so they cannot disagree; the deploy test fails while the committed page is out of date.

use std::io;

use clap_mangen::roff::{Inline, Roff, bold, italic, line_break, roman};

/// Read at build time: the page must not depend on where the binary runs.
const README: &str = include_str!("../../../../README.md");
const BEGIN: &str = "<!-- mirror-xdp.toml(5) begins";
const END: &str = "<!-- mirror-xdp.toml(5) ends";

/// The page, `version` in its title.
pub fn render(version: &str) -> io::Result<Vec<u8>> {
    let source = format!("mirror-xdp {version}");
    let mut roff = Roff::new();
    // The title line as clap_mangen writes the other pages' (no date: byte-stable output).
    roff.control(
        "TH",
        ["mirror-xdp.toml", "5", "", &source, "mirror-xdp manual"],
    );
    roff.control("SH", ["NAME"]);
    roff.text([roman(
        "mirror-xdp.toml - the policy file of mirror-xdp: ports, sources, limits",
    )]);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([bold("/etc/mirror-xdp/policy.toml")]);
    roff.control("SH", ["DESCRIPTION"]);
    for block in blocks(reference(README)?)? {
        block.render(&mut roff);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("mirror-xdp"),
        roman("(1), "),
        bold("mirror-xdp-check"),
        roman("(1), "),
        bold("mirror-xdp-reload"),
        roman("(1)"),
    ]);
    Ok(roff.render().into_bytes())
}

/// The lines between the marker comments (each on a line of its own).
fn reference(readme: &str) -> io::Result<&str> {
    let missing = || io::Error::other("README.md: the mirror-xdp.toml(5) markers are missing");
    let (_, rest) = readme.split_once(BEGIN).ok_or_else(missing)?;
    let (_, body) = rest.split_once('\n').ok_or_else(missing)?;
    let (body, _) = body.split_once(END).ok_or_else(missing)?;
    Ok(body)
}

/// The markdown the reference uses, one block at a time.
#[derive(Debug, PartialEq)]
enum Block {
    /// `### Title`: a section of the page.
    Heading(String),
    Paragraph(String),
    /// A fenced block, verbatim.
    Code(Vec<String>),
    /// `- ` at depth 0, `  - ` at depth 1, with its continuation lines.
    Item {
        depth: usize,
        text: String,
    },
    /// A table: its header cells and rows.
    Table(Vec<String>, Vec<Vec<String>>),
}

/// Splits the markdown into blocks; anything it does not know is an error, so the page never
/// shows markdown syntax.
fn blocks(markdown: &str) -> io::Result<Vec<Block>> {
    let mut out = Vec::new();
    let mut lines = markdown.lines().peekable();
    while let Some(line) = lines.next() {
        let block = if line.trim().is_empty() {
            continue;
        } else if line.starts_with("```") {
            let code = lines.by_ref().take_while(|l| !l.starts_with("```"));
            Block::Code(code.map(str::to_string).collect())
        } else if let Some(title) = line.strip_prefix("### ") {
            Block::Heading(title.to_string())
        } else if line.starts_with('|') {
            let mut rows = vec![cells(line)];
            while let Some(row) = lines.next_if(|l| l.starts_with('|')) {
                if !row.starts_with("|-") {
                    rows.push(cells(row));
                }
            }
            let header = rows.remove(0);
            Block::Table(header, rows)
        } else if let Some((depth, first)) = item(line) {
            let mut text = first.to_string();
            // A continuation line is indented past its bullet.
            let indent = " ".repeat(2 * depth + 2);
            while let Some(more) = lines.next_if(|l| l.starts_with(&indent) && item(l).is_none()) {
                text = format!("{text} {}", more.trim());
            }
            Block::Item { depth, text }
        } else if line.starts_with(['#', '>', '*', '<', ' ']) {
            return Err(io::Error::other(format!(
                "README.md: the policy reference has markdown the man page cannot show: {line}"
            )));
        } else {
            let mut text = line.to_string();
            while let Some(more) = lines.next_if(|l| !l.trim().is_empty() && item(l).is_none()) {
                text = format!("{text} {}", more.trim());
            }
            Block::Paragraph(text)
        };
        out.push(block);
    }
    Ok(out)
}

/// `- text` (depth 0) or `  - text` (depth 1).
fn item(line: &str) -> Option<(usize, &str)> {
    let depth = line
        .find("- ")
        .filter(|&i| line[..i].trim().is_empty() && i % 2 == 0)?
        / 2;
    Some((depth, &line[2 * depth + 2..]))
}

/// `| a | b |` -> ["a", "b"].
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

impl Block {
    fn render(&self, roff: &mut Roff) {
        match self {
            Block::Heading(title) => {
                roff.control("SH", [title.to_uppercase().as_str()]);
            }
            Block::Paragraph(text) => {
                roff.control("PP", []);
                roff.text(inlines(text));
            }
            Block::Code(lines) => {
                roff.control("PP", [])
                    .control("RS", ["2"])
                    .control("nf", []);
                for line in lines {
                    roff.text([roman(line.as_str())]);
                }
                roff.control("fi", []).control("RE", []);
            }
            Block::Item { depth, text } => {
                // A nested item sits under its parent's text.
                if *depth > 0 {
                    roff.control("RS", ["2"]);
                }
                roff.control("IP", ["\\(bu", "2"]);
                roff.text(inlines(text));
                if *depth > 0 {
                    roff.control("RE", []);
                }
            }
            Block::Table(header, rows) => {
                // No tbl(1): a tagged paragraph per row, the first cell its tag and each
                // other cell on a line of its own, named by its column.
                for row in rows {
                    roff.control("TP", []);
                    roff.text(inlines(&row[0]));
                    let mut body = Vec::new();
                    for (i, (name, cell)) in header.iter().zip(row).enumerate().skip(1) {
                        if i > 1 {
                            body.push(line_break());
                        }
                        body.push(italic(format!("{name}:")));
                        body.push(roman(" "));
                        body.extend(inlines(cell));
                    }
                    roff.text(body);
                }
            }
        }
    }
}

/// Inline markdown: `code` and **strong** in bold, a link as its text (and its target when
/// that differs).
fn inlines(text: &str) -> Vec<Inline> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let next = rest.find(['`', '*', '[']).unwrap_or(rest.len());
        if next > 0 {
            out.push(roman(&rest[..next]));
            rest = &rest[next..];
            continue;
        }
        let (inline, after) = span(rest).unwrap_or_else(|| (roman(&rest[..1]), &rest[1..]));
        out.push(inline);
        rest = after;
    }
    out
}

/// The marked-up span at the start of `text`, and what follows it; `None` if the mark is a
/// plain character there.
fn span(text: &str) -> Option<(Inline, &str)> {
    let delimited = |open: &str, close: &str| {
        let inner = text.strip_prefix(open)?;
        let end = inner.find(close)?;
        Some((&inner[..end], &inner[end + close.len()..]))
    };
    if let Some((inner, after)) = delimited("**", "**").or_else(|| delimited("`", "`")) {
        return Some((bold(inner), after));
    }
    let (label, after) = delimited("[", "](")?;
    let end = after.find(')')?;
    let target = &after[..end];
    let shown = if label == target {
        label.to_string()
    } else {
        format!("{label} ({target})")
    };
    Some((roman(shown), &after[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> String {
        String::from_utf8(render("0.0.0").unwrap()).unwrap()
    }

    fn roff(markdown: &str) -> String {
        let mut roff = Roff::new();
        for block in blocks(markdown).unwrap() {
            block.render(&mut roff);
        }
        roff.to_roff()
    }

    #[test]
    fn the_page_is_the_readme_reference() {
        let page = page();
        assert!(page.contains(".TH mirror-xdp.toml 5"), "{page}");
        for needle in [
            ".SH LIMITS",
            "\"WHAT HAPPENS TO A PACKET\"",
            "A policy is a TOML file",
            "per_source_syn_burst",
            "source_not_allowed",
            // The last paragraph: the end marker is after it.
            "The\none answer XDP ever sends",
        ] {
            let flat = page.replace("\\-", "-").replace('\n', " ");
            assert!(
                flat.contains(&needle.replace('\n', " ")),
                "no {needle} in {page}"
            );
        }
        assert!(
            !page.contains("Command line"),
            "read past the end marker: {page}"
        );
    }

    #[test]
    fn no_markdown_is_left_on_the_page() {
        let page = page();
        // A table row would start a line ("|" itself is in the TOML's comments).
        for syntax in ["```", "`", "](", "**", "\n|", "###", "<!--"] {
            assert!(!page.contains(syntax), "{syntax:?} in {page}");
        }
    }

    #[test]
    fn each_kind_of_block_becomes_roff() {
        assert_eq!(
            roff("Text `code`\nmore [a](b.md).\n\n### Two words\n"),
            ".PP\nText \\fBcode\\fR more a (b.md).\n.SH \"TWO WORDS\"\n"
        );
        assert_eq!(
            roff("```toml\n.x = 1   # y\n```\n"),
            ".PP\n.RS 2\n.nf\n\\&.x = 1   # y\n.fi\n.RE\n"
        );
        assert_eq!(
            roff("- one\n  two\n  - nested\n    more\n- three\n"),
            ".IP \\(bu 2\none two\n.RS 2\n.IP \\(bu 2\nnested more\n.RE\n.IP \\(bu 2\nthree\n"
        );
        assert_eq!(
            roff("| # | what | then |\n|---|---|---|\n| 1 | `a` | b |\n"),
            ".TP\n1\n\\fIwhat:\\fR \\fBa\\fR\n.br\n\\fIthen:\\fR b\n"
        );
    }

    #[test]
    fn markdown_the_page_cannot_show_is_refused() {
        for markdown in ["## Other section\n", "> quote\n", "* star item\n"] {
            assert!(blocks(markdown).is_err(), "{markdown}");
        }
    }

    #[test]
    fn the_reference_needs_both_markers() {
        assert!(reference("a\n<!-- mirror-xdp.toml(5) begins -->\nx\n").is_err());
        assert_eq!(
            reference("<!-- mirror-xdp.toml(5) begins -->\nx\n<!-- mirror-xdp.toml(5) ends -->")
                .unwrap(),
            "x\n"
        );
    }
}
