//! Conversations: the inbox of an account and one conversation's history, both refreshed in
//! place while the page is open, and a reply box that sends through the send use case.
//!
//! Media are links, never loaded into the page: they live on Meta's servers, and the console
//! loads nothing from another host.

use actix_web::web::{Data, Form, Path, Query};
use actix_web::{HttpRequest, HttpResponse, get, post};
use chrono::Utc;
use insta_router_domain::{
    ConversationId, Direction, HUMAN_AGENT_WINDOW, Message, RawSendRequest, ReplyTo,
    STANDARD_WINDOW, SendRequest,
};
use insta_router_ports::PageRequest;
use maud::{Markup, html};
use serde::Deserialize;

use crate::layout::{
    Nav, account_picker, empty, html_response, live, no_account, notice, page, see_other, time,
};
use crate::session::{CsrfForm, Session};
use crate::{Failure, PREFIX, State};

pub(crate) fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(inbox)
        .service(history)
        .service(reply)
        .service(mark_read);
}

#[derive(Deserialize)]
struct InboxQuery {
    account: Option<String>,
    /// `1`: only the list (the script's refresh).
    fragment: Option<u8>,
}

#[get("/conversations")]
async fn inbox(
    state: Data<State>,
    session: Session,
    query: Query<InboxQuery>,
) -> Result<HttpResponse, Failure> {
    let accounts = session.accounts(&state).await?;
    let Some(account) = session.pick(&accounts, query.account.as_deref()) else {
        return Ok(page(
            &session,
            Nav::Conversations,
            "Conversations",
            no_account(&session),
        ));
    };
    let list = state
        .app
        .inbox
        .conversations(
            &account.id,
            PageRequest {
                after: None,
                limit: 100,
            },
        )
        .await?;
    let now = Utc::now();
    let content = html! {
        @if list.items.is_empty() {
            (empty("No conversations yet.", html! {
                "They appear here, without reloading, when a customer writes to @" (account.username.as_str())
                ". Check that Meta sends this account's webhooks (Accounts page) if nothing comes."
            }))
        } @else {
            ul class="inbox" {
                @for s in &list.items {
                    @let c = &s.conversation;
                    li class={ "conversation" @if s.unread > 0 { " unread" } } {
                        a href={ (PREFIX) "/conversations/" (c.id.as_str()) } {
                            span class="customer" { (c.customer_id.as_str()) }
                            @if s.unread > 0 { span class="badge" { (s.unread) " unread" } }
                            @if c.window_open(now) { span class="tag open" { "window open" } }
                            @else { span class="tag closed" { "window closed" } }
                            span class="last" { (s.last_message.as_ref().map(summary).unwrap_or_default()) }
                            (time(c.last_message_at))
                        }
                    }
                }
            }
        }
    };
    if query.fragment == Some(1) {
        return Ok(html_response(content));
    }
    let source = format!(
        "{PREFIX}/conversations?account={}&fragment=1",
        account.id.as_str()
    );
    let body = html! {
        (account_picker("/conversations", &accounts, Some(account), false))
        (live("inbox", &source, content))
    };
    Ok(page(&session, Nav::Conversations, "Conversations", body))
}

/// One line about a message, for the inbox.
fn summary(m: &Message) -> String {
    let who = if m.direction == Direction::Inbound {
        ""
    } else {
        "You: "
    };
    let what = m
        .text
        .clone()
        .unwrap_or_else(|| format!("[{}]", m.kind.as_str()));
    let mut line: String = format!("{who}{what}").chars().take(80).collect();
    if line.len() < who.len() + what.len() {
        line.push('…');
    }
    line
}

fn message(m: &Message) -> Markup {
    let side = if m.direction == Direction::Inbound {
        "in"
    } else {
        "out"
    };
    html! {
        li class={ "message " (side) } {
            div class="meta" {
                span class="kind" { (m.kind.as_str()) }
                " · " (time(m.sent_at))
                @if m.deleted_at.is_some() { " · " span class="tag closed" { "deleted by the customer" } }
            }
            @if let Some(ReplyTo::Story { id, url }) = &m.reply_to {
                p class="context" { "Replying to story " (id)
                    @if let Some(url) = url { " · " a href=(url) rel="noreferrer noopener" target="_blank" { "open the story" } } }
            }
            @if let Some(text) = &m.text { p class="text" { (text) } }
            @for a in &m.attachments {
                p class="attachment" {
                    (a.kind.as_str())
                    @if let Some(title) = &a.title { ": " (title) }
                    @if let Some(url) = &a.url { " · " a href=(url) rel="noreferrer noopener" target="_blank" { "open" } }
                }
            }
            @if let Some(payload) = &m.context.payload { p class="context" { "Payload: " code { (payload) } } }
        }
    }
}

#[derive(Deserialize)]
struct ConversationQuery {
    fragment: Option<u8>,
    done: Option<String>,
    /// The send a reply made.
    message: Option<String>,
}

/// The conversation `raw` when the key sees its account, with that account's id.
async fn visible(
    state: &State,
    session: &Session,
    raw: &str,
) -> Result<(ConversationId, insta_router_domain::AccountId), Failure> {
    let hidden = || Failure::NotFound(format!("no conversation {raw}"));
    let id = ConversationId::parse("conversation_id", raw).map_err(|_| hidden())?;
    let account = state.app.inbox.account_of(&id).await?.ok_or_else(hidden)?;
    session.require(&account).map_err(|_| hidden())?;
    Ok((id, account))
}

#[get("/conversations/{id}")]
async fn history(
    state: Data<State>,
    session: Session,
    path: Path<String>,
    query: Query<ConversationQuery>,
) -> Result<HttpResponse, Failure> {
    let (id, account) = visible(&state, &session, &path).await?;
    let conversation = state.app.inbox.conversation(&id).await?;
    let mut messages = state
        .app
        .inbox
        .messages(
            &id,
            PageRequest {
                after: None,
                limit: 100,
            },
        )
        .await?
        .items;
    messages.reverse();
    let history = html! {
        ol class="history" {
            @for m in &messages { (message(m)) }
        }
    };
    if query.fragment == Some(1) {
        return Ok(html_response(history));
    }
    let now = Utc::now();
    let window = conversation
        .last_inbound_at
        .map(|t| (t + STANDARD_WINDOW, t + HUMAN_AGENT_WINDOW));
    // Only a real message id is shown back, not whatever text a link carried.
    let sent = query
        .message
        .as_deref()
        .and_then(|m| insta_router_domain::MessageId::parse("message", m).ok());
    let done = match (query.done.as_deref(), sent) {
        (Some("sent"), Some(message)) => Some(format!(
            "Reply {message} queued: it goes out in a moment. Sending the same form again sends nothing more."
        )),
        (Some("read"), _) => Some("Marked as read, here and on Instagram.".to_owned()),
        _ => None,
    };
    let source = format!("{PREFIX}/conversations/{}?fragment=1", id.as_str());
    let body = html! {
        (notice(done.as_deref()))
        p { "Customer " strong { (conversation.customer_id.as_str()) } " · account " (account.as_str()) " · "
            a href={ (PREFIX) "/conversations?account=" (account.as_str()) } { "back to the inbox" } }
        (live("history", &source, history))
        section aria-labelledby="h-reply" class="reply" {
            h2 id="h-reply" { "Reply" }
            @match window {
                Some((closes, _)) if now < closes => p class="help" id="window" {
                    "The 24-hour window is open until " (time(closes)) ": any reply may be sent." }
                Some((_, human)) if now < human => p class="help" id="window" {
                    "The 24-hour window closed. Until " (time(human)) " a person may still answer: tick "
                    em { "Written by a person" } " and Meta receives it tagged " code { "HUMAN_AGENT" } "." }
                _ => p class="help" id="window" {
                    "The customer has not written in the last 7 days: Meta refuses replies until they write again." }
            }
            form method="post" action={ (PREFIX) "/conversations/" (id.as_str()) "/reply" } {
                input type="hidden" name="csrf" value=(session.csrf);
                // One key per rendered form: sending it twice (a double click, a reload) sends once.
                input type="hidden" name="idempotency_key" value={ "console-" (uuid::Uuid::now_v7().simple()) };
                label for="text" { "Message" }
                textarea id="text" name="text" rows="3" maxlength="1000" required {}
                div class="check" {
                    input type="checkbox" id="human_agent" name="human_agent" value="on";
                    label for="human_agent" { "Written by a person (" code { "human_agent" } ")" }
                }
                button type="submit" { "Send" }
            }
            form method="post" action={ (PREFIX) "/conversations/" (id.as_str()) "/read" } {
                input type="hidden" name="csrf" value=(session.csrf);
                button type="submit" class="secondary" { "Mark as read" }
            }
        }
    };
    Ok(page(&session, Nav::Conversations, "Conversation", body))
}

#[derive(Deserialize)]
struct ReplyForm {
    csrf: String,
    idempotency_key: String,
    text: String,
    human_agent: Option<String>,
}

#[post("/conversations/{id}/reply")]
async fn reply(
    req: HttpRequest,
    state: Data<State>,
    session: Session,
    path: Path<String>,
    form: Form<ReplyForm>,
) -> Result<HttpResponse, Failure> {
    session.check(&req, &form.csrf)?;
    let (id, account) = visible(&state, &session, &path).await?;
    let conversation = state.app.inbox.conversation(&id).await?;
    let request = SendRequest::parse(RawSendRequest {
        account_id: account.as_str(),
        recipient_id: conversation.customer_id.as_str(),
        text: Some(form.text.trim()).filter(|t| !t.is_empty()),
        attachment: None,
        quick_replies: Vec::new(),
        human_agent: form.human_agent.is_some(),
        idempotency_key: Some(&form.idempotency_key),
        metadata: None,
    })
    .map_err(|e| Failure::Invalid(e.to_string()))?;
    let receipt = state.app.sending.send(request).await?;
    tracing::info!(message_id = %receipt.message.id, replayed = receipt.replayed, "console: reply queued");
    Ok(see_other(&format!(
        "{PREFIX}/conversations/{}?done=sent&message={}",
        id.as_str(),
        receipt.message.id.as_str()
    )))
}

#[post("/conversations/{id}/read")]
async fn mark_read(
    req: HttpRequest,
    state: Data<State>,
    session: Session,
    path: Path<String>,
    form: Form<CsrfForm>,
) -> Result<HttpResponse, Failure> {
    session.check(&req, &form.csrf)?;
    let (id, _) = visible(&state, &session, &path).await?;
    state.app.inbox.mark_read(&id).await?;
    Ok(see_other(&format!(
        "{PREFIX}/conversations/{}?done=read",
        id.as_str()
    )))
}
