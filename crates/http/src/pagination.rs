//! Cursor pagination on the wire: `?limit=&cursor=` in, `{data, next_cursor, has_more}` out.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use insta_router_domain::FieldError;
use insta_router_ports::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::ApiError;

/// Paging parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// How many items to return, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl PageQuery {
    pub(crate) fn to_request(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=PageRequest::MAX_LIMIT).contains(&limit) {
            return Err(ApiError::Invalid(
                FieldError::new("limit", "must be between 1 and 200").into(),
            ));
        }
        let after = self
            .cursor
            .as_deref()
            .map(|c| {
                URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| {
                        ApiError::Invalid(
                            FieldError::new("cursor", "is not a cursor this API returned").into(),
                        )
                    })
            })
            .transpose()?;
        Ok(PageRequest { after, limit })
    }
}

/// One page of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PageBody<T> {
    /// The items.
    data: Vec<T>,
    /// Pass as `cursor` to get the next page; null on the last page.
    next_cursor: Option<String>,
    /// Whether there is a next page.
    has_more: bool,
}

impl<T> PageBody<T> {
    pub(crate) fn from_page<U>(page: Page<U>, f: impl Fn(U) -> T) -> Self {
        Self {
            data: page.items.into_iter().map(f).collect(),
            has_more: page.next.is_some(),
            next_cursor: page.next.map(|n| URL_SAFE_NO_PAD.encode(n)),
        }
    }
}
