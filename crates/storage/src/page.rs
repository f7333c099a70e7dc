//! Keyset pagination shared by the stores: fetch `limit + 1` rows, keep `limit`, and hand out
//! the last row's key as the cursor of the next page.

use insta_router_ports::{Page, RepoError};
use sea_orm::{ColumnTrait, Condition};

/// Turns rows fetched with `limit + 1` into a page.
pub(crate) fn into_page<M, T>(
    mut rows: Vec<M>,
    limit: u32,
    cursor: impl Fn(&M) -> String,
    convert: impl Fn(M) -> Result<T, RepoError>,
) -> Result<Page<T>, RepoError> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(&cursor) } else { None };
    let items = rows.into_iter().map(convert).collect::<Result<_, _>>()?;
    Ok(Page { items, next })
}

/// The cursor of a listing ordered by a time, then an id: `"{micros}:{id}"`.
pub(crate) fn time_cursor(micros: i64, id: &str) -> String {
    format!("{micros}:{id}")
}

/// The rows after [`time_cursor`]'s `cursor` in a listing ordered by `time` descending, then
/// `id` descending.
pub(crate) fn after_time_cursor(
    cursor: &str,
    time: impl ColumnTrait,
    id: impl ColumnTrait,
) -> Result<Condition, RepoError> {
    let (micros, last_id) = cursor.split_once(':').ok_or(RepoError::InvalidCursor)?;
    let micros: i64 = micros.parse().map_err(|_| RepoError::InvalidCursor)?;
    Ok(Condition::any()
        .add(time.lt(micros))
        .add(Condition::all().add(time.eq(micros)).add(id.lt(last_id))))
}
