//! Hand-written SQL shared by the backends.

use sea_orm::{DatabaseBackend, Statement, Value};

/// A statement from SQL written with `?` placeholders, numbered `$1, $2, ...` for PostgreSQL.
/// The SQL must not hold a literal `?`.
pub(crate) fn statement(backend: DatabaseBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = if backend == DatabaseBackend::Postgres {
        let mut out = String::with_capacity(sql.len() + 8);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Column `index` of `row` as an integer, whichever width the backend returns.
pub(crate) fn int_at(row: &sea_orm::QueryResult, index: usize) -> Option<i64> {
    row.try_get_by_index::<Option<i64>>(index)
        .ok()
        .flatten()
        .or_else(|| {
            row.try_get_by_index::<Option<i32>>(index)
                .ok()
                .flatten()
                .map(i64::from)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_only() {
        let pg = statement(DatabaseBackend::Postgres, "a = ? AND b = ?", vec![]);
        assert_eq!(pg.sql, "a = $1 AND b = $2");
        let lite = statement(DatabaseBackend::Sqlite, "a = ? AND b = ?", vec![]);
        assert_eq!(lite.sql, "a = ? AND b = ?");
    }
}
