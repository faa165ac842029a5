//! The one error type of the HTTP boundary and the one place that turns it into a
//! status code. Client mistakes are answered plainly and logged at debug level only.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::publish_limit::RateLimited;
use super::reconnect::Reconnect;
use crate::bus::PublishError;

/// Everything a request can be refused for.
#[derive(Debug)]
pub enum AppError {
    /// No XSRF token in the form (`_xsrf`) or the `X-XSRFToken` header.
    XsrfMissing,
    /// The request carries no `_xsrf` cookie to compare the token with.
    XsrfNoCookie,
    /// The token does not match the cookie.
    XsrfMismatch,
    /// A required form field is absent.
    MissingField(&'static str),
    /// The body is not `application/x-www-form-urlencoded` text in UTF-8.
    MalformedForm,
    /// The form body is larger than any message could need.
    BodyTooLarge,
    /// The body ended early or could not be read.
    BodyUnreadable,
    /// The body went this long without a byte (`--body-timeout`).
    BodyTimeout(std::time::Duration),
    /// `next` does not name a path on this site.
    OffsiteRedirect,
    /// The bus refused the message body.
    Publish(PublishError),
    /// A WebSocket upgrade from a page of another origin.
    CrossOrigin,
    /// A request to the WebSocket endpoint that is not a valid upgrade, and why.
    NotWebSocket(&'static str),
    /// An upgrade that this connection cannot make (it was not served by hyper's
    /// HTTP/1 connection, as in a router test).
    NotUpgradable,
    /// Every subscriber slot is taken (`--max-subscribers`): come back then.
    OverCapacity(Reconnect),
    /// The client publishes faster than `--publish-rate` allows.
    RateLimited(RateLimited),
}

/// Seconds a client is asked to wait before it publishes again while the shared bus is
/// down: Redis restarts in about that.
const BUS_RETRY_AFTER_SECS: u64 = 5;

/// Marks a refused response with its reason, for the `requests_rejected` metric.
#[derive(Clone, Copy, Debug)]
pub struct Rejected(pub &'static str);

impl AppError {
    /// The reason label of the `requests_rejected` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            AppError::XsrfMissing => "xsrf_missing",
            AppError::XsrfNoCookie => "xsrf_no_cookie",
            AppError::XsrfMismatch => "xsrf_mismatch",
            AppError::MissingField(_) => "missing_field",
            AppError::MalformedForm => "malformed_form",
            AppError::BodyTooLarge => "body_too_large",
            AppError::BodyUnreadable => "body_unreadable",
            AppError::BodyTimeout(_) => "body_timeout",
            AppError::OffsiteRedirect => "offsite_redirect",
            AppError::Publish(error) => publish_reason(error),
            AppError::CrossOrigin => "cross_origin",
            AppError::NotWebSocket(_) => "not_websocket",
            AppError::NotUpgradable => "not_upgradable",
            AppError::OverCapacity(_) => "over_capacity",
            AppError::RateLimited(_) => "rate_limited",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            AppError::XsrfMissing | AppError::XsrfNoCookie | AppError::XsrfMismatch | AppError::CrossOrigin => {
                StatusCode::FORBIDDEN
            }
            AppError::Publish(PublishError::TooLarge { .. }) | AppError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            // Redis is down: the client did nothing wrong and may retry.
            AppError::Publish(PublishError::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::OverCapacity(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
            AppError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::MissingField(_)
            | AppError::MalformedForm
            | AppError::BodyUnreadable
            | AppError::OffsiteRedirect
            | AppError::NotWebSocket(_)
            | AppError::Publish(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn message(&self) -> String {
        match self {
            AppError::XsrfMissing => "'_xsrf' argument missing from POST".to_owned(),
            AppError::XsrfNoCookie => "'_xsrf' cookie missing: load the page first".to_owned(),
            AppError::XsrfMismatch => "XSRF cookie does not match POST argument".to_owned(),
            AppError::MissingField(name) => format!("missing form field '{name}'"),
            AppError::MalformedForm => "body is not a UTF-8 url-encoded form".to_owned(),
            AppError::BodyTooLarge => "request body too large".to_owned(),
            AppError::BodyUnreadable => "request body could not be read".to_owned(),
            AppError::BodyTimeout(patience) => {
                format!("request body stalled: nothing for {} s", patience.as_secs_f64())
            }
            AppError::OffsiteRedirect => "'next' must be a path on this site, starting with a single '/'".to_owned(),
            AppError::Publish(error) => error.to_string(),
            AppError::CrossOrigin => "cross-origin WebSocket refused".to_owned(),
            AppError::NotWebSocket(why) => (*why).to_owned(),
            AppError::NotUpgradable => "this connection cannot be upgraded to a WebSocket".to_owned(),
            AppError::OverCapacity(reconnect) => {
                format!("server at capacity: retry in {} s", reconnect.retry_after_secs())
            }
            AppError::RateLimited(limited) => limited.message(),
        }
    }

    /// The `Retry-After` of a refusal that will pass, in whole seconds.
    fn retry_after(&self) -> Option<u64> {
        match self {
            AppError::OverCapacity(reconnect) => Some(reconnect.retry_after_secs()),
            AppError::RateLimited(limited) => Some(limited.retry_after_secs()),
            AppError::Publish(PublishError::Unavailable) => Some(BUS_RETRY_AFTER_SECS),
            _ => None,
        }
    }
}

/// The `requests_rejected` reason of a body the bus refused, whether it came in a POST
/// or in a WebSocket frame.
pub(super) fn publish_reason(error: &PublishError) -> &'static str {
    match error {
        PublishError::Empty => "empty_body",
        PublishError::TooLarge { .. } => "body_too_large",
        PublishError::ControlCharacter => "control_character",
        PublishError::Unavailable => "bus_unavailable",
    }
}

impl From<PublishError> for AppError {
    fn from(error: PublishError) -> Self {
        AppError::Publish(error)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.message();
        tracing::debug!(%status, %message, "request refused");
        let mut response =
            (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message + "\n").into_response();
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may never come: the connection cannot carry another
            // request (HTTP/2 drops this header and resets only the stream).
            response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        }
        if let Some(secs) = self.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response.extensions_mut().insert(Rejected(self.reason()));
        response
    }
}
