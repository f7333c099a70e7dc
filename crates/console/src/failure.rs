//! What a console request can end in besides its page: a redirect to sign in, or an error
//! page with the status the REST API would give, and no detail of the storage.

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::{HttpResponse, ResponseError};
use insta_router_app::{
    AccountError, AnalyticsError, DeliveryError, InboxError, RuleError, SendFailure,
    SubscriptionError,
};
use insta_router_ports::RepoError;
use maud::html;

use crate::PREFIX;

/// A request the console does not answer with its page.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No session, or its key no longer works: sign in (a page load is redirected, a
    /// background refresh gets 401).
    SignIn { background: bool },
    /// The form's CSRF token is missing or wrong, or it came from another site.
    Forged,
    /// The key may not do this.
    Forbidden(String),
    /// No such thing (or not the caller's).
    NotFound(String),
    /// A refused input, said in words.
    Invalid(String),
    /// The request conflicts with the current state.
    Conflict(String),
    /// The database could not answer.
    Unavailable,
}

/// The message shown on the error page.
impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SignIn { .. } => f.write_str("sign in to continue"),
            Self::Forged => f.write_str(
                "this form expired or did not come from this console; reload the page and try again",
            ),
            Self::Forbidden(m) | Self::NotFound(m) | Self::Invalid(m) | Self::Conflict(m) => {
                f.write_str(m)
            }
            Self::Unavailable => {
                f.write_str("the database is not answering; try again in a moment")
            }
        }
    }
}

impl ResponseError for Failure {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::SignIn { background: false } => StatusCode::SEE_OTHER,
            Self::SignIn { background: true } => StatusCode::UNAUTHORIZED,
            Self::Forged | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::SignIn { background: false } = self {
            return HttpResponse::SeeOther()
                .insert_header((LOCATION, format!("{PREFIX}/login")))
                .finish();
        }
        let status = self.status_code();
        let page = html! {
            (maud::DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                // No favicon request: the icon is empty.
                link rel="icon" href="data:,";
                    title { "insta-router: " (status.canonical_reason().unwrap_or("error")) }
                    link rel="stylesheet" href=(crate::assets::url("console.css"));
                }
                body {
                    main id="main" class="narrow" {
                        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                        p role="alert" { (self.to_string()) }
                        p { a href=(PREFIX) { "Back to the dashboard" } }
                    }
                }
            }
        };
        HttpResponse::build(status)
            .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
            .body(page.into_string())
    }
}

impl From<RepoError> for Failure {
    fn from(error: RepoError) -> Self {
        tracing::warn!(error = %error, "console: the database failed");
        Self::Unavailable
    }
}

impl From<AnalyticsError> for Failure {
    fn from(error: AnalyticsError) -> Self {
        match error {
            AnalyticsError::AccountNotFound(id) => Self::NotFound(format!("no account {id}")),
            AnalyticsError::Storage(e) => e.into(),
        }
    }
}

impl From<InboxError> for Failure {
    fn from(error: InboxError) -> Self {
        match error {
            InboxError::Storage(e) => e.into(),
            InboxError::Graph(e) => Self::Conflict(format!("Instagram refused: {e}")),
            other => Self::NotFound(other.to_string()),
        }
    }
}

impl From<DeliveryError> for Failure {
    fn from(error: DeliveryError) -> Self {
        match error {
            DeliveryError::Storage(e) => e.into(),
            DeliveryError::NotFound(_) => Self::NotFound(error.to_string()),
            other => Self::Conflict(other.to_string()),
        }
    }
}

impl From<RuleError> for Failure {
    fn from(error: RuleError) -> Self {
        match error {
            RuleError::Storage(e) => e.into(),
            RuleError::Invalid(errors) => Self::Invalid(errors.to_string()),
            other => Self::NotFound(other.to_string()),
        }
    }
}

impl From<AccountError> for Failure {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Storage(e) => e.into(),
            AccountError::NotFound(_) => Self::NotFound(error.to_string()),
            AccountError::Invalid(errors) => Self::Invalid(errors.to_string()),
            AccountError::Conflict { .. } => Self::Conflict(error.to_string()),
            AccountError::Sealing(e) => {
                tracing::warn!(error = %e, "console: a secret could not be sealed");
                Self::Unavailable
            }
        }
    }
}

impl From<SendFailure> for Failure {
    fn from(error: SendFailure) -> Self {
        match error {
            SendFailure::Storage(e) => e.into(),
            SendFailure::AccountNotFound(_)
            | SendFailure::NotFound(_)
            | SendFailure::CommentNotFound(_) => Self::NotFound(error.to_string()),
            SendFailure::KeyReused(_) => Self::Invalid(error.to_string()),
            other => Self::Conflict(other.to_string()),
        }
    }
}

impl From<SubscriptionError> for Failure {
    fn from(error: SubscriptionError) -> Self {
        match error {
            SubscriptionError::Storage(e) => e.into(),
            SubscriptionError::AccountNotFound(_) => Self::NotFound(error.to_string()),
            SubscriptionError::Token(_) => Self::Conflict(error.to_string()),
            SubscriptionError::Graph(e) => Self::Conflict(format!("Instagram refused: {e}")),
        }
    }
}
