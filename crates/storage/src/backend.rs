//! Which database product a URL names.

/// The database products insta-router runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, bundled: one process, one file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

impl Backend {
    /// How many tasks should write webhooks at once on this database: one on SQLite (one
    /// writer at a time anyway); two on PostgreSQL, whose groups are then twice as large as
    /// with four at the same load, and each group one statement for it to run (less of its
    /// CPU per event, measured); four on MySQL.
    pub fn ingest_writers(self) -> usize {
        match self {
            Self::Sqlite => 1,
            Self::Postgres => 2,
            Self::MySql => 4,
        }
    }
}
