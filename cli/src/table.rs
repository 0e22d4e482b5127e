//! Tables for people (programs read `--json`): a header, a rule under it and one at the end, as
//! restic prints them, laid out by comfy-table (column widths from the widest cell, wide
//! characters counted as such).

use comfy_table::{CellAlignment, ContentArrangement, LineStyle, Table, TableStyle};

const STYLE: TableStyle = TableStyle::new()
    .header_separator(LineStyle::none().fill('-').junction('-'))
    .bottom_border(LineStyle::none().fill('-').junction('-'));

/// A table with these column headers; `right` lists the columns (numbers) aligned right.
pub fn new(header: &[&str], right: &[usize]) -> Table {
    let mut t = Table::new();
    t.load_style(STYLE).set_content_arrangement(ContentArrangement::Disabled).set_header(header.to_vec());
    let last = header.len().saturating_sub(1);
    for (i, column) in t.column_iter_mut().enumerate() {
        // Two spaces between columns (the padding and the style's blank separator), none
        // before the first or after the last.
        column.set_padding((0, u16::from(i != last)));
        if right.contains(&i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// Prints `t` on standard output, without trailing blanks.
pub fn print(t: &Table) {
    for line in t.lines() {
        println!("{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_fit_the_widest_cell_and_numbers_align_right() {
        let mut t = super::new(&["ID", "LABEL", "PACKS"], &[2]);
        t.add_row(vec!["a1", "a long label", "7"]);
        t.add_row(vec!["b2", "x", "1234"]);
        let lines: Vec<String> = t.lines().map(|l| l.trim_end().to_string()).collect();
        assert_eq!(
            lines,
            [
                "ID  LABEL         PACKS",
                "-----------------------",
                "a1  a long label      7",
                "b2  x              1234",
                "-----------------------",
            ]
        );
    }
}
