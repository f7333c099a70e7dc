//! Auto-reply rules: the list with on/off switches, a form to create or edit one, and a
//! dry-run box that shows which rule would answer a text, and why the others would not.

use actix_web::web::{Data, Form, Path, Query};
use actix_web::{HttpRequest, HttpResponse, get, post};
use insta_router_app::{ConditionDocument, ReplyDocument, RuleDocument, RuleView, TrialMessage};
use insta_router_domain::{AccountId, RuleId};
use maud::{Markup, html};
use serde::Deserialize;

use crate::layout::{Nav, account_picker, empty, no_account, notice, page, see_other};
use crate::session::Session;
use crate::{Failure, PREFIX, State};

pub(crate) fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(list)
        .service(new_rule)
        .service(edit_rule)
        .service(create)
        .service(replace)
        .service(toggle)
        .service(delete);
}

#[derive(Deserialize)]
struct ListQuery {
    account: Option<String>,
    /// A text to try the rules on.
    #[serde(rename = "try")]
    trial: Option<String>,
    done: Option<String>,
}

/// A condition in a few words.
fn condition(c: &ConditionDocument) -> String {
    match c {
        ConditionDocument::Keywords { any_of, .. } => format!("any of: {}", any_of.join(", ")),
        ConditionDocument::Exact { text } => format!("exactly “{text}”"),
        ConditionDocument::StartsWith { text } => format!("starts with “{text}”"),
        ConditionDocument::Regex { pattern } => format!("matches /{pattern}/"),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v["type"].as_str().map(|t| t.replace('_', " ")))
            .unwrap_or_default(),
    }
}

#[get("/rules")]
async fn list(
    state: Data<State>,
    session: Session,
    query: Query<ListQuery>,
) -> Result<HttpResponse, Failure> {
    let accounts = session.accounts(&state).await?;
    let Some(account) = session.pick(&accounts, query.account.as_deref()) else {
        return Ok(page(&session, Nav::Rules, "Rules", no_account(&session)));
    };
    let rules = state.app.rules.list(&account.id).await?;
    let trial = match query
        .trial
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        None => None,
        Some(text) => Some((
            text.to_owned(),
            state
                .app
                .rules
                .try_out(
                    &account.id,
                    TrialMessage {
                        text: Some(text.to_owned()),
                        ..TrialMessage::default()
                    },
                )
                .await?,
        )),
    };
    let name_of = |id: &RuleId| {
        rules
            .iter()
            .find(|r| &r.id == id)
            .map_or_else(|| id.to_string(), |r| r.document.name.clone())
    };
    let done = match query.done.as_deref() {
        Some("saved") => Some("Rule saved."),
        Some("deleted") => Some("Rule deleted."),
        Some("toggled") => Some("Rule switched."),
        _ => None,
    };
    let account_q = account.id.as_str();
    let body = html! {
        (notice(done))
        (account_picker("/rules", &accounts, Some(account), false))
        p { a class="button" href={ (PREFIX) "/rules/new?account=" (account_q) } { "New rule" } }
        @if rules.is_empty() {
            (empty("No rules yet.", html! {
                "A rule answers matching messages automatically, within Meta's 24-hour window. "
                a href={ (PREFIX) "/rules/new?account=" (account_q) } { "Create the first one" } "."
            }))
        } @else {
            table class="rules" {
                thead { tr { th scope="col" { "Rule" } th scope="col" { "Priority" } th scope="col" { "When" }
                    th scope="col" { "Reply" } th scope="col" { "State" } th scope="col" { span class="sr-only" { "Actions" } } } }
                tbody {
                    @for r in &rules {
                        tr {
                            td { a href={ (PREFIX) "/rules/" (r.id.as_str()) "/edit?account=" (account_q) } { (r.document.name) } }
                            td { (r.document.priority) }
                            td { (r.document.conditions.iter().map(condition).collect::<Vec<_>>().join("; ")) }
                            td { (r.document.reply.text) }
                            td { @if r.document.enabled { span class="tag open" { "on" } } @else { span class="tag closed" { "off" } } }
                            td class="actions" {
                                form method="post" action={ (PREFIX) "/rules/" (r.id.as_str()) "/toggle" } {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="account" value=(account_q);
                                    button type="submit" class="secondary" aria-label={ (if r.document.enabled { "Turn off " } else { "Turn on " }) (r.document.name) } {
                                        @if r.document.enabled { "Turn off" } @else { "Turn on" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-try" {
            h2 id="h-try" { "Dry run" }
            p class="help" { "Which rule would answer this text? Nothing is sent; the conversation's history (cooldowns, the hourly cap, a person's takeover) is not applied." }
            form method="get" action={ (PREFIX) "/rules" } {
                input type="hidden" name="account" value=(account_q);
                label for="try" { "Customer's message" }
                input id="try" name="try" type="text" value=(query.trial.as_deref().unwrap_or("")) required;
                button type="submit" { "Try" }
            }
            @if let Some((text, outcome)) = &trial {
                div id="trial" class="trial" aria-live="polite" {
                    @match (&outcome.rule, &outcome.reply) {
                        (Some(rule), Some(reply)) => p { "“" (text) "” is answered by " strong id="trial-rule" { (rule.document.name) } ": " q { (reply) } },
                        _ => p { strong id="trial-rule" { "No rule" } " answers “" (text) "”." },
                    }
                    @if let Some(blocked) = &outcome.blocked { p { "Blocked: " (blocked) } }
                    @if !outcome.skipped.is_empty() {
                        ul {
                            @for (id, why) in &outcome.skipped { li { (name_of(id)) ": " (why) } }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&session, Nav::Rules, "Rules", body))
}

/// What the rule form shows: a stored rule, a new one, or what was posted and refused.
struct Draft {
    name: String,
    priority: i32,
    cooldown_seconds: u64,
    reply: String,
    conditions: String,
    enabled: bool,
}

impl Draft {
    fn new_rule() -> Self {
        Self {
            name: String::new(),
            priority: 0,
            cooldown_seconds: 3600,
            reply: String::new(),
            conditions: r#"[{"type": "keywords", "any_of": ["price", "cost"]}]"#.to_owned(),
            enabled: true,
        }
    }

    fn of(rule: &RuleView) -> Self {
        let d = &rule.document;
        Self {
            name: d.name.clone(),
            priority: d.priority,
            cooldown_seconds: d.cooldown_seconds,
            reply: d.reply.text.clone(),
            conditions: serde_json::to_string_pretty(&d.conditions).unwrap_or_default(),
            enabled: d.enabled,
        }
    }

    fn posted(form: &RuleForm) -> Self {
        Self {
            name: form.name.clone(),
            priority: form.priority,
            cooldown_seconds: form.cooldown_seconds,
            reply: form.reply.clone(),
            conditions: form.conditions.clone(),
            enabled: form.enabled.is_some(),
        }
    }
}

fn rule_form(
    session: &Session,
    account: &AccountId,
    rule: Option<&RuleId>,
    draft: &Draft,
    error: Option<&str>,
) -> Markup {
    let action = match rule {
        Some(id) => format!("{PREFIX}/rules/{}", id.as_str()),
        None => format!("{PREFIX}/rules"),
    };
    html! {
        @if let Some(error) = error {
            p class="error" role="alert" id="rule-error" { "Not saved: " (error) }
        }
        form method="post" action=(action) class="rule-form" {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="account" value=(account.as_str());
            label for="name" { "Name" }
            input id="name" name="name" type="text" required maxlength="100" value=(draft.name);
            label for="priority" { "Priority (higher is tried first)" }
            input id="priority" name="priority" type="number" value=(draft.priority);
            label for="cooldown_seconds" { "Cooldown per customer, in seconds" }
            input id="cooldown_seconds" name="cooldown_seconds" type="number" min="0" value=(draft.cooldown_seconds);
            label for="reply" { "Reply (" code { "{username}" } ", " code { "{name}" } ", " code { "{first_name}" } " and " code { "{text}" } " are filled in)" }
            textarea id="reply" name="reply" rows="3" required { (draft.reply) }
            label for="conditions" { "Conditions (JSON, all must match)" }
            textarea id="conditions" name="conditions" rows="6" required aria-describedby="conditions-help" { (draft.conditions) }
            p id="conditions-help" class="help" {
                "Types: " code { "keywords" } " (" code { "any_of" } ", " code { "whole_word" } "), " code { "exact" } ", "
                code { "starts_with" } ", " code { "regex" } ", " code { "story_mention" } ", " code { "story_reply" } ", "
                code { "attachment" } ", " code { "postback" } ", " code { "quick_reply" } ", " code { "referral" } ", "
                code { "first_message" } ", " code { "comment" } ", " code { "first_comment" } ", " code { "schedule" } ". See API.md."
            }
            div class="check" {
                input id="enabled" name="enabled" type="checkbox" value="on" checked[draft.enabled];
                label for="enabled" { "On" }
            }
            button type="submit" { "Save" }
        }
        @if let Some(id) = rule {
            form method="post" action={ (PREFIX) "/rules/" (id.as_str()) "/delete" } {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="account" value=(account.as_str());
                button type="submit" class="danger" { "Delete this rule" }
            }
        }
    }
}

/// After a save: back to the list; for a refused rule, the form again with what was posted
/// and why (422); any other failure as it is.
fn answer(
    saved: Result<RuleView, Failure>,
    session: &Session,
    account: &AccountId,
    rule: Option<&RuleId>,
    form: &RuleForm,
) -> Result<HttpResponse, Failure> {
    let reason = match saved {
        Ok(_) => return Ok(back(account, "saved")),
        Err(Failure::Invalid(reason)) => reason,
        Err(failure) => return Err(failure),
    };
    let title = if rule.is_some() {
        "Edit rule"
    } else {
        "New rule"
    };
    let markup = rule_form(session, account, rule, &Draft::posted(form), Some(&reason));
    let mut response = page(session, Nav::Rules, title, markup);
    *response.status_mut() = actix_web::http::StatusCode::UNPROCESSABLE_ENTITY;
    Ok(response)
}

#[derive(Deserialize)]
struct AccountQuery {
    account: String,
}

#[get("/rules/new")]
async fn new_rule(session: Session, query: Query<AccountQuery>) -> Result<HttpResponse, Failure> {
    let account = session.account(&query.account)?;
    let form = rule_form(&session, &account, None, &Draft::new_rule(), None);
    Ok(page(&session, Nav::Rules, "New rule", form))
}

fn rule_id(raw: &str) -> Result<RuleId, Failure> {
    RuleId::parse("rule_id", raw).map_err(|_| Failure::NotFound(format!("no rule {raw}")))
}

#[get("/rules/{id}/edit")]
async fn edit_rule(
    state: Data<State>,
    session: Session,
    path: Path<String>,
    query: Query<AccountQuery>,
) -> Result<HttpResponse, Failure> {
    let account = session.account(&query.account)?;
    let rule = state.app.rules.get(&account, &rule_id(&path)?).await?;
    let form = rule_form(&session, &account, Some(&rule.id), &Draft::of(&rule), None);
    Ok(page(&session, Nav::Rules, "Edit rule", form))
}

#[derive(Deserialize)]
struct RuleForm {
    csrf: String,
    account: String,
    name: String,
    priority: i32,
    cooldown_seconds: u64,
    reply: String,
    conditions: String,
    enabled: Option<String>,
}

impl RuleForm {
    /// The document, keeping what the form does not show (quick replies, a public reply).
    fn document(&self, before: Option<&RuleDocument>) -> Result<RuleDocument, Failure> {
        let conditions: Vec<ConditionDocument> = serde_json::from_str(&self.conditions)
            .map_err(|e| Failure::Invalid(format!("conditions: {e}")))?;
        Ok(RuleDocument {
            name: self.name.trim().to_owned(),
            priority: self.priority,
            enabled: self.enabled.is_some(),
            conditions,
            reply: ReplyDocument {
                text: self.reply.clone(),
                quick_replies: before
                    .map(|b| b.reply.quick_replies.clone())
                    .unwrap_or_default(),
                public_reply: before.and_then(|b| b.reply.public_reply.clone()),
            },
            cooldown_seconds: self.cooldown_seconds,
        })
    }
}

fn back(account: &AccountId, done: &str) -> HttpResponse {
    see_other(&format!(
        "{PREFIX}/rules?account={}&done={done}",
        account.as_str()
    ))
}

#[post("/rules")]
async fn create(
    req: HttpRequest,
    state: Data<State>,
    session: Session,
    form: Form<RuleForm>,
) -> Result<HttpResponse, Failure> {
    session.check(&req, &form.csrf)?;
    let account = session.account(&form.account)?;
    let saved = async {
        let document = form.document(None)?;
        Ok(state.app.rules.create(&account, document).await?)
    }
    .await;
    answer(saved, &session, &account, None, &form)
}

#[post("/rules/{id}")]
async fn replace(
    req: HttpRequest,
    state: Data<State>,
    session: Session,
    path: Path<String>,
    form: Form<RuleForm>,
) -> Result<HttpResponse, Failure> {
    session.check(&req, &form.csrf)?;
    let account = session.account(&form.account)?;
    let id = rule_id(&path)?;
    let before = state.app.rules.get(&account, &id).await?;
    let saved = async {
        let document = form.document(Some(&before.document))?;
        Ok(state.app.rules.replace(&account, &id, document).await?)
    }
    .await;
    answer(saved, &session, &account, Some(&id), &form)
}

#[derive(Deserialize)]
struct RuleAction {
    csrf: String,
    account: String,
}

#[post("/rules/{id}/toggle")]
async fn toggle(
    req: HttpRequest,
    state: Data<State>,
    session: Session,
    path: Path<String>,
    form: Form<RuleAction>,
) -> Result<HttpResponse, Failure> {
    session.check(&req, &form.csrf)?;
    let account = session.account(&form.account)?;
    let id = rule_id(&path)?;
    let mut document = state.app.rules.get(&account, &id).await?.document;
    document.enabled = !document.enabled;
    state.app.rules.replace(&account, &id, document).await?;
    Ok(back(&account, "toggled"))
}

#[post("/rules/{id}/delete")]
async fn delete(
    req: HttpRequest,
    state: Data<State>,
    session: Session,
    path: Path<String>,
    form: Form<RuleAction>,
) -> Result<HttpResponse, Failure> {
    session.check(&req, &form.csrf)?;
    let account = session.account(&form.account)?;
    state.app.rules.delete(&account, &rule_id(&path)?).await?;
    Ok(back(&account, "deleted"))
}
