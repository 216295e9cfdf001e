//! A small text table: left-aligned columns padded to their widest cell.

/// Rows of cells under a header.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right_aligned: Vec<bool>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            right_aligned: vec![false; header.len()],
        }
    }

    /// Right-aligns column `index` (numbers).
    pub fn right(mut self, index: usize) -> Table {
        if let Some(r) = self.right_aligned.get_mut(index) {
            *r = true;
        }
        self
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, each line indented by `indent` spaces.
    pub fn render(&self, indent: usize) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let pad = " ".repeat(indent);
        let line = |cells: &[String]| {
            let mut out = pad.clone();
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let fill = " ".repeat(width.saturating_sub(cell.chars().count()));
                if self.right_aligned[i] {
                    out.push_str(&fill);
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    if i + 1 < columns {
                        out.push_str(&fill);
                    }
                }
                if i + 1 < columns {
                    out.push_str("  ");
                }
            }
            out.trim_end().to_owned()
        };
        let mut out = line(&self.header);
        out.push('\n');
        out.push_str(&pad);
        out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * columns.saturating_sub(1)));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let mut t = Table::new(&["name", "n"]).right(1);
        t.row(vec!["a".into(), "100".into()]);
        t.row(vec!["long name".into(), "2".into()]);
        assert_eq!(
            t.render(0),
            "name         n\n--------------\na          100\nlong name    2\n"
        );
    }
}
