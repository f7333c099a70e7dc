//! Hand-written SQL shared by the backends.

use insta_router_ports::RepoError;
use sea_orm::sea_query::{Alias, Expr, InsertStatement, Query};
use sea_orm::{DatabaseBackend, Statement, Value};

use crate::backend::Backend;

/// Most bound values per statement: under SQLite's 32766 and PostgreSQL's 65535.
pub(crate) const MAX_PARAMS: usize = 30_000;

/// An `INSERT INTO table (columns) VALUES ...` of `rows`.
pub(crate) fn insert_into(
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
) -> Result<InsertStatement, RepoError> {
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new(table))
        .columns(columns.iter().map(|c| Alias::new(*c)));
    for row in rows {
        insert
            .values(row.into_iter().map(Expr::val))
            .map_err(|e| RepoError::Corrupt(format!("building an insert into {table}: {e}")))?;
    }
    Ok(insert)
}

/// `rows` in chunks that stay under the bound-parameter limits.
pub(crate) fn chunks(rows: Vec<Vec<Value>>, columns: usize) -> Vec<Vec<Vec<Value>>> {
    let per_chunk = (MAX_PARAMS / columns.max(1)).max(1);
    let mut out = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        out.push(rows.by_ref().take(per_chunk).collect());
    }
    out
}

/// `(?, ?, ...), (?, ...)` or `($1, ...), ($n, ...)`: `rows` groups of `columns` marks.
pub(crate) fn value_groups(backend: Backend, rows: usize, columns: usize) -> String {
    let mut sql = String::new();
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(row * columns + column + 1).to_string());
                }
                Backend::Sqlite | Backend::MySql => sql.push('?'),
            }
        }
        sql.push(')');
    }
    sql
}

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

/// Which of `keys` an `UPDATE ... RETURNING id` changed, in order, from the ids in its
/// `rows`: a key that comes twice counts at its first place only.
pub(crate) fn returned<'k>(
    rows: &[sea_orm::QueryResult],
    keys: impl IntoIterator<Item = &'k str>,
) -> Result<Vec<bool>, RepoError> {
    let mut changed = std::collections::HashSet::with_capacity(rows.len());
    for row in rows {
        changed.insert(
            row.try_get_by_index::<String>(0)
                .map_err(crate::error::unavailable)?,
        );
    }
    Ok(keys.into_iter().map(|key| changed.remove(key)).collect())
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

    #[test]
    fn value_groups_number_their_marks_across_rows_for_postgres() {
        assert_eq!(value_groups(Backend::Postgres, 2, 2), "($1, $2), ($3, $4)");
        assert_eq!(value_groups(Backend::MySql, 2, 1), "(?), (?)");
    }
}
