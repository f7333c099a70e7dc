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
    /// How many tasks should write webhooks at once on this database. Two on SQLite: its
    /// writer thread writes one group at a time, and while it does the other task reads the
    /// next group's routes and plans its jobs, so the thread never waits for a plan (measured
    /// against one: +7 % events/s, -5 % CPU per event). Two on PostgreSQL, whose groups are
    /// then twice as large as with four (or three) at the same load, and each group one
    /// statement for it to run (less of its CPU per event, measured); four on MySQL.
    pub fn ingest_writers(self) -> usize {
        match self {
            Self::Sqlite => 2,
            Self::Postgres => 2,
            Self::MySql => 4,
        }
    }
}
