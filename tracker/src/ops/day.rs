//! UTC days: parsing `YYYY-MM-DD` / `today` / `yesterday`, their bounds, and the partition holding them.

use chrono::{DateTime, Days, NaiveDate, Utc};

/// Parses `YYYY-MM-DD`, `today` or `yesterday` (UTC).
pub fn parse_day(s: &str) -> Result<NaiveDate, String> {
    let today = Utc::now().date_naive();
    match s.trim() {
        "today" => Ok(today),
        "yesterday" => today
            .checked_sub_days(Days::new(1))
            .ok_or_else(|| "no yesterday".to_owned()),
        v => NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map_err(|e| format!("`{v}` is not a day YYYY-MM-DD, `today` or `yesterday` ({e})")),
    }
}

/// Parses an RFC 3339 time.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{s}` is not an RFC 3339 time like 2024-11-24T00:00:00Z ({e})"))
}

/// `[start, end)` of a UTC day.
pub fn bounds(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = day.and_time(chrono::NaiveTime::MIN).and_utc();
    let end = day
        .checked_add_days(Days::new(1))
        .unwrap_or(day)
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    (start, end)
}

/// The name of the partition holding `day`: `saga_events_pYYYYMMDD`.
pub fn partition_name(day: NaiveDate) -> String {
    format!("saga_events_p{}", day.format("%Y%m%d"))
}

/// The day of a partition name, if it is one.
pub fn partition_day(name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix("saga_events_p")?;
    if digits.len() != 8 {
        return None;
    }
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// Every day of `from..=to`.
pub fn days(from: NaiveDate, to: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    from.iter_days().take_while(move |d| *d <= to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_and_name_partitions() {
        let d = parse_day("2024-11-24").expect("day");
        assert_eq!(partition_name(d), "saga_events_p20241124");
        assert_eq!(partition_day("saga_events_p20241124"), Some(d));
        assert_eq!(partition_day("saga_events_default"), None);
        assert!(parse_day("2024-13-01").is_err());
        assert!(parse_day("24.11.2024").is_err());
        assert_eq!(
            parse_day("yesterday").expect("day"),
            Utc::now().date_naive() - Days::new(1)
        );
        let (s, e) = bounds(d);
        assert_eq!(s.to_rfc3339(), "2024-11-24T00:00:00+00:00");
        assert_eq!(e.to_rfc3339(), "2024-11-25T00:00:00+00:00");
        assert_eq!(days(d, d + Days::new(2)).count(), 3);
        assert!(parse_time("2024-11-24T10:00:00+02:00").is_ok());
        assert!(parse_time("2024-11-24").is_err());
    }
}
