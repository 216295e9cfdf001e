//! Permanent or transient: what a failed batch write means for the events in it.
//!
//! A *data* error is caused by the events themselves and fails the same way on every retry: PostgreSQL's SQLSTATE
//! classes `22` (data exception: invalid text encoding, value out of range, ...), `23` (integrity constraint) and
//! `54` (program limit exceeded: `index row size ... exceeds btree maximum`, `index row requires ... bytes`, jsonb
//! too large), and a value the client cannot encode. The ingest loop bisects such a batch to find the events that
//! cause it and dead-letters them with the database's message.
//!
//! Everything else is *transient* and the whole batch is retried with backoff: connection errors (`08`), pool
//! timeouts and I/O, transaction rollbacks (`40`: serialization failure, deadlock), insufficient resources (`53`:
//! disk full, too many connections), operator intervention (`57`: admin shutdown, statement timeout), and
//! `42`/`XX` (a missing table, a permission, an internal error: a deployment problem, never caused by the values of
//! one event since every value is a bound parameter). Dead-lettering those would empty the topic into the DLQ;
//! retrying stalls the partition, which `saga_tracker_partition_stalled` and `/healthz` report.

/// How a failed write is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Caused by the data: the same events fail again; find and dead-letter them.
    Data,
    /// The database or the connection: retry the same batch later.
    Transient,
}

/// SQLSTATE classes whose errors are caused by the values written.
pub const DATA_CLASSES: [&str; 3] = ["22", "23", "54"];

/// Classifies a SQLSTATE code (five characters; the first two are the class).
pub fn sqlstate_kind(code: &str) -> FailureKind {
    match code.get(..2) {
        Some(class) if DATA_CLASSES.contains(&class) => FailureKind::Data,
        _ => FailureKind::Transient,
    }
}

/// Classifies an error returned by a batch write.
pub fn kind(error: &sqlx::Error) -> FailureKind {
    match error {
        sqlx::Error::Database(e) => e
            .code()
            .map_or(FailureKind::Transient, |code| sqlstate_kind(&code)),
        sqlx::Error::Encode(_) => FailureKind::Data,
        _ => FailureKind::Transient,
    }
}

/// The text that goes to `dlq.error` for a data error: `SQLSTATE 54000: index row size ...`.
pub fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(e) => match e.code() {
            Some(code) => format!("SQLSTATE {code}: {}", e.message()),
            None => e.message().to_owned(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        for code in ["22021", "22001", "23505", "23514", "54000"] {
            assert_eq!(sqlstate_kind(code), FailureKind::Data, "{code}");
        }
        for code in [
            "08006", "40001", "40P01", "53100", "53300", "57014", "57P01", "42P01", "42501",
            "XX000", "", "2",
        ] {
            assert_eq!(sqlstate_kind(code), FailureKind::Transient, "{code}");
        }
        assert_eq!(kind(&sqlx::Error::PoolTimedOut), FailureKind::Transient);
        assert_eq!(
            kind(&sqlx::Error::Io(std::io::Error::other("reset"))),
            FailureKind::Transient
        );
        assert_eq!(kind(&sqlx::Error::Encode("bad".into())), FailureKind::Data);
    }
}
