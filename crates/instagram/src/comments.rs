//! Meta's `comments` and `live_comments` webhook changes: a comment on one of the account's
//! posts, reels or ads, or on its live broadcast, or a reply to one.
//!
//! ```json
//! {"field": "comments", "value": {"id": "17900000000000099", "text": "price?",
//!   "from": {"id": "1234567890123456", "username": "jane"}, "parent_id": "1790...",
//!   "media": {"id": "17800000000000055", "media_product_type": "FEED",
//!             "ad_id": "...", "ad_title": "..."}}}
//! ```

use insta_router_domain::{
    InboundEventKind, InstagramAccountId, InstagramCommentId, InstagramUserId, Parties,
    ReceivedComment,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::raw::{Lenient, clean};

/// The comment in `value`, made on `account`'s media; `live` for `live_comments`.
///
/// # Errors
///
/// Why it is not a usable comment (the caller keeps it as unrecognized).
pub(crate) fn comment(
    value: &RawValue,
    account: Option<&InstagramAccountId>,
    live: bool,
) -> Result<InboundEventKind, String> {
    let raw: RawComment = serde_json::from_str(value.get()).map_err(|e| e.to_string())?;
    let account = account.ok_or("the entry names no account")?.clone();
    let id = Lenient::get(raw.id.as_ref()).ok_or("no comment id")?;
    let comment_id = InstagramCommentId::parse("id", id).map_err(|e| e.to_string())?;
    let from = raw.from.unwrap_or_default();
    let author = Lenient::get(from.id.as_ref()).ok_or("no from.id")?;
    let customer = InstagramUserId::parse("from.id", author).map_err(|e| e.to_string())?;
    let parent_id = Lenient::get(raw.parent_id.as_ref())
        .map(|p| InstagramCommentId::parse("parent_id", p))
        .transpose()
        .map_err(|e| e.to_string())?;
    let media = raw.media.unwrap_or_default();
    let text = |t: Option<String>| t.map(|t| clean(&t));
    Ok(InboundEventKind::Comment(ReceivedComment {
        parties: Parties { account, customer },
        comment_id,
        username: text(from.username),
        text: text(raw.text),
        media_id: Lenient::get(media.id.as_ref()).map(str::to_owned),
        media_product_type: text(media.media_product_type),
        parent_id,
        live,
        ad_id: Lenient::get(media.ad_id.as_ref()).map(str::to_owned),
        ad_title: text(media.ad_title),
    }))
}

#[derive(Deserialize)]
struct RawComment {
    #[serde(default)]
    id: Option<Lenient>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    parent_id: Option<Lenient>,
    #[serde(default)]
    from: Option<RawFrom>,
    #[serde(default)]
    media: Option<RawMedia>,
}

#[derive(Deserialize, Default)]
struct RawFrom {
    #[serde(default)]
    id: Option<Lenient>,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawMedia {
    #[serde(default)]
    id: Option<Lenient>,
    #[serde(default)]
    media_product_type: Option<String>,
    #[serde(default)]
    ad_id: Option<Lenient>,
    #[serde(default)]
    ad_title: Option<String>,
}
