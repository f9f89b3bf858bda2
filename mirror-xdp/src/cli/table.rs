//! Aligned text tables for the `list` commands: columns as wide as their widest cell.

/// The header and rows as left-aligned columns two spaces apart, one line each.
pub fn render<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let header = header.map(String::from);
    let mut widths = [0; N];
    for row in std::iter::once(&header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_take_the_widest_cell() {
        let rows = [["live".to_string(), "198.51.100.0/24".to_string()]];
        assert_eq!(
            super::render(["ORIGIN", "PREFIX"], &rows),
            "ORIGIN  PREFIX\nlive    198.51.100.0/24\n"
        );
    }
}
