//! Database URLs: parsed once into the backend they name, with the forms of the Python
//! service accepted.

use std::path::PathBuf;
use std::str::FromStr;

use sea_orm::sqlx::sqlite::SqliteConnectOptions;

use crate::backend::Backend;

/// A database URL, normalised (see [`DatabaseUrl::parse`]), that knows its backend.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    backend: Backend,
}

impl DatabaseUrl {
    /// Parses `raw`: `sqlite://`, `postgres://` (`postgresql://`), `mysql://` (`mariadb://`),
    /// and SQLAlchemy's `dialect+driver://` forms of the original service.
    ///
    /// # Errors
    ///
    /// A message (with the password hidden) when the URL names no supported database.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = normalize(raw);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") {
            Backend::Postgres
        } else if url.starts_with("mysql://") {
            Backend::MySql
        } else {
            return Err(format!(
                "{} is not a sqlite://, postgres:// or mysql:// URL",
                redact(raw.trim())
            ));
        };
        Ok(Self { url, backend })
    }

    /// The URL as the drivers take it.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The database product.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// An in-memory SQLite database.
    pub fn in_memory(&self) -> bool {
        self.backend == Backend::Sqlite
            && (self.url.contains(":memory:") || self.url.contains("mode=memory"))
    }

    /// The file of a SQLite database; `None` for other backends and in memory.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        if self.backend != Backend::Sqlite || self.in_memory() {
            return None;
        }
        SqliteConnectOptions::from_str(&self.url)
            .ok()
            .map(|o| o.get_filename().to_owned())
    }

    /// The URL without its password, for messages and logs.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Rewrites the URL forms of the Python service (SQLAlchemy's `driver+dialect://`) and common
/// aliases into the form the drivers take, so an existing `.env` keeps working; for SQLite files
/// it adds `mode=rwc` (create when missing) unless a mode is given.
///
/// `sqlite+aiosqlite:///./instagram_automation.db` becomes
/// `sqlite://./instagram_automation.db?mode=rwc`: the same file.
pub(crate) fn normalize(raw: &str) -> String {
    let raw = raw.trim();
    let (scheme, rest) = match raw.split_once("://") {
        Some(parts) => parts,
        None => return raw.to_owned(),
    };
    let dialect = scheme
        .split('+')
        .next()
        .unwrap_or(scheme)
        .to_ascii_lowercase();
    match dialect.as_str() {
        "sqlite" => {
            // SQLAlchemy puts three slashes before a relative path and four before an absolute
            // one; sqlx takes two and three. Only SQLAlchemy's `sqlite+driver` form is shifted.
            let path = if scheme.contains('+') {
                rest.strip_prefix('/').unwrap_or(rest)
            } else {
                rest
            };
            let mut url = format!("sqlite://{path}");
            if !path.starts_with(":memory:") && !path.contains("mode=") {
                url.push_str(if path.contains('?') {
                    "&mode=rwc"
                } else {
                    "?mode=rwc"
                });
            }
            url
        }
        "postgres" | "postgresql" => format!("postgres://{rest}"),
        "mysql" | "mariadb" => format!("mysql://{rest}"),
        _ => raw.to_owned(),
    }
}

/// The database URL without its password, for messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}://{user}:***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_alias_urls_are_normalised() {
        for (given, expected) in [
            (
                "sqlite+aiosqlite:///./instagram_automation.db",
                "sqlite://./instagram_automation.db?mode=rwc",
            ),
            (
                "sqlite+aiosqlite:////var/lib/app.db",
                "sqlite:///var/lib/app.db?mode=rwc",
            ),
            (
                "sqlite://insta_router.db?mode=rwc",
                "sqlite://insta_router.db?mode=rwc",
            ),
            ("sqlite://x.db", "sqlite://x.db?mode=rwc"),
            (
                "sqlite://x.db?cache=shared",
                "sqlite://x.db?cache=shared&mode=rwc",
            ),
            ("sqlite::memory:", "sqlite::memory:"),
            ("postgresql+asyncpg://u:p@h/db", "postgres://u:p@h/db"),
            ("postgresql://h/db", "postgres://h/db"),
            ("mysql+aiomysql://root@h/db", "mysql://root@h/db"),
            ("mariadb://root@h/db", "mysql://root@h/db"),
        ] {
            assert_eq!(normalize(given), expected, "{given}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("oracle://u:secret@h/db"), "oracle://u:***@h/db");
        assert_eq!(redact("oracle://h/db"), "oracle://h/db");
    }

    #[test]
    fn a_url_knows_its_backend_file_and_memory() {
        let file = DatabaseUrl::parse("sqlite+aiosqlite:///./shop.db").unwrap();
        assert_eq!(file.backend(), Backend::Sqlite);
        assert_eq!(file.sqlite_file(), Some(PathBuf::from("./shop.db")));
        let memory = DatabaseUrl::parse("sqlite::memory:").unwrap();
        assert!(memory.in_memory() && memory.sqlite_file().is_none());
        let pg = DatabaseUrl::parse("postgresql://u:pw@h/db").unwrap();
        assert_eq!(pg.backend(), Backend::Postgres);
        assert_eq!(format!("{pg:?}"), "postgres://u:***@h/db");
        let refused = DatabaseUrl::parse("oracle://u:pw@h/db").unwrap_err();
        assert!(refused.contains("oracle://u:***@h/db"), "{refused}");
    }
}
