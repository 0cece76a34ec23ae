//! How results are shown: aligned text tables for people, JSON for scripts.
//!
//! The tables are small and plain (no borders, two spaces between columns) so that they stay
//! readable in a terminal and easy to `grep`/`awk`. Cells are made single-line, because a
//! payload with a newline would otherwise break the alignment of every row after it.

use clap::ValueEnum;
use endure_proto::prost_types::Timestamp;
use endure_proto::OrchestrationStatus;
use serde_json::Value;

use super::time::{rfc3339, Precision};

/// Spaces between two table columns.
const COLUMN_GAP: &str = "  ";
/// What a table cell shows for a missing value, so that columns never look shifted.
pub const NONE: &str = "-";
/// Prefix of every status name in the proto enum; people type and read the rest.
const STATUS_PREFIX: &str = "ORCHESTRATION_STATUS_";

/// The `--output` choices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for reading in a terminal.
    #[default]
    Table,
    /// One JSON document, for scripts (`jq`).
    Json,
}

/// A table built row by row and rendered with each column as wide as its widest cell.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells render empty and extra cells are kept as extra columns.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|cell| single_line(&cell)).collect());
    }

    /// The rendered table, one line per row, each ending in a newline. The last column is
    /// not padded, so no line has trailing spaces.
    pub fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            for (index, cell) in line.iter().enumerate() {
                widths[index] = widths[index].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (index, width) in widths.iter().enumerate() {
                let cell = line.get(index).map(String::as_str).unwrap_or("");
                if index > 0 {
                    text.push_str(COLUMN_GAP);
                }
                text.push_str(cell);
                if index + 1 < columns {
                    text.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A two-column "field: value" listing, for one record (`workflow get`, `cluster status`).
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(key, _)| key.chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(key, value)| {
            let label = format!("{key}:");
            format!(
                "{label:<width$}{COLUMN_GAP}{}\n",
                single_line(value),
                width = width + 1
            )
        })
        .collect()
}

/// Replaces line breaks and other control characters with visible escapes (`\n`, `\t`).
pub fn single_line(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| match c {
            '\n' => "\\n".to_string(),
            '\r' => "\\r".to_string(),
            '\t' => "\\t".to_string(),
            c if c.is_control() => format!("\\u{{{:x}}}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// At most `max_chars` characters, ending in `…` when something was cut.
pub fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let kept: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// Prints a JSON document to stdout, indented for reading; `jq` takes it as well.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("a JSON value always serializes")
    );
}

/// The status as people write it (`RUNNING`), or `UNKNOWN(n)` for a number this CLI does
/// not know (a newer server).
pub fn status_name(status: i32) -> String {
    match OrchestrationStatus::try_from(status) {
        Ok(known) => known
            .as_str_name()
            .trim_start_matches(STATUS_PREFIX)
            .to_string(),
        Err(_) => format!("UNKNOWN({status})"),
    }
}

/// Parses a status as a user types it: any case, with or without the proto prefix.
pub fn parse_status(text: &str) -> Result<OrchestrationStatus, String> {
    let upper = text.trim().to_ascii_uppercase();
    let bare = upper.trim_start_matches(STATUS_PREFIX);
    OrchestrationStatus::from_str_name(&format!("{STATUS_PREFIX}{bare}")).ok_or_else(|| {
        format!("unknown status '{text}' (one of RUNNING, COMPLETED, CONTINUED_AS_NEW, FAILED, CANCELED, TERMINATED, PENDING, SUSPENDED, STALLED)")
    })
}

/// A timestamp for a table cell (milliseconds), or `-` when unset.
pub fn table_time(timestamp: Option<&Timestamp>) -> String {
    timestamp
        .map(|t| rfc3339(t, Precision::Millis))
        .unwrap_or_else(|| NONE.to_string())
}

/// A timestamp for JSON (full precision), or `null` when unset.
pub fn json_time(timestamp: Option<&Timestamp>) -> Value {
    timestamp
        .map(|t| Value::String(rfc3339(t, Precision::Full)))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell_without_trailing_spaces() {
        let mut table = Table::new(&["ID", "STATUS"]);
        table.row(vec!["a-long-id".into(), "RUNNING".into()]);
        table.row(vec!["b".into(), "".into()]);
        assert_eq!(table.render(), "ID         STATUS\na-long-id  RUNNING\nb\n");
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let mut table = Table::new(&["NAME", "X"]);
        table.row(vec!["héllo".into(), "1".into()]);
        assert_eq!(table.render(), "NAME   X\nhéllo  1\n");
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(Table::new(&["ID", "NAME"]).render(), "ID  NAME\n");
    }

    #[test]
    fn newlines_in_cells_do_not_break_rows() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["x\ny".into(), "t\tab".into()]);
        assert_eq!(table.render(), "A     B\nx\\ny  t\\tab\n");
    }

    #[test]
    fn fields_line_up_their_values() {
        let text = fields(&[("Name", "Greeter".into()), ("Instance ID", "wf-1".into())]);
        assert_eq!(text, "Name:         Greeter\nInstance ID:  wf-1\n");
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abcde…");
        assert_eq!(truncate("ééééééé", 3), "éé…");
    }

    #[test]
    fn statuses_read_and_parse_without_the_prefix() {
        assert_eq!(
            status_name(OrchestrationStatus::ContinuedAsNew as i32),
            "CONTINUED_AS_NEW"
        );
        assert_eq!(status_name(99), "UNKNOWN(99)");
        assert_eq!(parse_status(" pending "), Ok(OrchestrationStatus::Pending));
        assert_eq!(
            parse_status("ORCHESTRATION_STATUS_FAILED"),
            Ok(OrchestrationStatus::Failed)
        );
        assert!(parse_status("done")
            .unwrap_err()
            .contains("unknown status 'done'"));
    }
}
