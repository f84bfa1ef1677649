//! Output helpers shared by the commands: timestamps, durations, key/value views and
//! JSON.

use std::io::Write;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::error::CliError;

/// A timestamp as printed for people: RFC 3339 in UTC, to the second.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A span of time in at most two units, e.g. `2d 3h`, `45m`, `12s`.
pub fn span(d: TimeDelta) -> String {
    let secs = d.num_seconds().unsigned_abs();
    const UNITS: [(&str, u64); 4] = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let Some(i) = UNITS.iter().position(|(_, size)| secs >= *size) else {
        return "0s".to_owned();
    };
    let (name, size) = UNITS[i];
    let mut out = format!("{}{name}", secs / size);
    // The next smaller unit, when it is not zero.
    if let Some((next, next_size)) = UNITS.get(i + 1) {
        let n = (secs % size) / next_size;
        if n > 0 {
            out.push_str(&format!(" {n}{next}"));
        }
    }
    out
}

/// `t` relative to `now`: `in 2d 3h` or `5m ago`.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = t - now;
    if d >= TimeDelta::zero() {
        format!("in {}", span(d))
    } else {
        format!("{} ago", span(d))
    }
}

/// Rows of `key  value`, keys padded to one width. Rows with an empty value are left
/// out.
pub fn key_values(rows: &[(&str, String)]) -> String {
    let width = rows
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| k.len())
        .max();
    let Some(width) = width else {
        return String::new();
    };
    let mut out = String::new();
    for (k, v) in rows.iter().filter(|(_, v)| !v.is_empty()) {
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    out
}

/// Write `text` to stdout (a closed pipe is not an error worth reporting).
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::io("<stdout>", e)),
        _ => Ok(()),
    }
}

/// Pretty JSON of `value`, with a final newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    let mut s = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Other(format!("cannot encode JSON: {e}")))?;
    s.push('\n');
    Ok(s)
}

/// A borderless, left-aligned table with one header row, trailing spaces trimmed:
/// readable in a terminal and easy to `awk`.
pub fn plain_table<const N: usize>(
    header: [&str; N],
    rows: impl IntoIterator<Item = [String; N]>,
) -> String {
    use comfy_table::{CellAlignment, Table, presets};
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header(header);
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column
            .set_padding((0, 2))
            .set_cell_alignment(CellAlignment::Left);
    }
    let mut out: String = table
        .to_string()
        .lines()
        .map(|l| l.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn times_and_spans_read_well() {
        let t = Utc.with_ymd_and_hms(2025, 6, 1, 12, 30, 5).unwrap();
        assert_eq!(time(t), "2025-06-01T12:30:05Z");
        assert_eq!(span(TimeDelta::seconds(0)), "0s");
        assert_eq!(span(TimeDelta::seconds(42)), "42s");
        assert_eq!(span(TimeDelta::minutes(45)), "45m");
        assert_eq!(span(TimeDelta::hours(24)), "1d");
        assert_eq!(span(TimeDelta::hours(27) + TimeDelta::minutes(5)), "1d 3h");
        assert_eq!(span(TimeDelta::hours(2) + TimeDelta::seconds(7)), "2h");
        assert_eq!(relative(t + TimeDelta::hours(3), t), "in 3h");
        assert_eq!(relative(t - TimeDelta::minutes(5), t), "5m ago");
    }

    #[test]
    fn key_values_align_and_skip_empty_values() {
        let text = key_values(&[
            ("serial", "0a".to_owned()),
            ("not after", "2025-06-01T12:30:05Z".to_owned()),
            ("notes", String::new()),
        ]);
        assert_eq!(text, "serial     0a\nnot after  2025-06-01T12:30:05Z\n");
        assert_eq!(key_values(&[]), "");
    }
}
