//! The HTTP surface: one module per transport, each a thin adapter over [`crate::bus`].
//!
//! | module        | endpoint                                  | direction          |
//! |---------------|-------------------------------------------|--------------------|
//! | [`publish`]   | `POST /a/message/new`                     | client → bus       |
//! | [`long_poll`] | `POST /a/message/updates`                 | bus → client       |
//! | [`websocket`] | `GET /a/message/socket`                   | both ways          |
//! | [`sse`]       | `GET /a/message/events`                   | bus → client       |
//! | [`page`]      | `GET /`, `GET /static/…`                  | the browser client |
//! | [`crate::metrics`] | `GET /metrics`                       | Prometheus         |
//!
//! A new transport is one new module and one `.merge` below. The streaming transports
//! share [`SubscriberSlot`] (the connection cap) and the fan-out (`fanout`): one task
//! per worker thread hands every new message to all their connections.

mod error;
mod fanout;
mod form;
pub mod long_poll;
pub mod page;
pub mod publish;
pub mod sse;
pub mod websocket;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;
use tower::util::MapResponseLayer;

pub use error::{AppError, Rejected};
use fanout::Fanout;
pub use form::Form;

use crate::AppState;

/// All routes, with the layers every request goes through.
pub fn routes(state: AppState) -> Router<AppState> {
    // The streaming transports share the fan-out: one set of shard tasks writes to
    // both. Layered on their routes alone, so no other request pays for carrying it.
    let streams = websocket::routes().merge(sse::routes()).layer(Extension(Arc::new(Fanout::default())));
    Router::new()
        .merge(page::routes())
        .merge(publish::routes())
        .merge(long_poll::routes())
        .merge(streams)
        .route("/metrics", get(crate::metrics::serve))
        // A plain function of the response: no boxed future per request, unlike
        // `middleware::from_fn`, and this runs on every request.
        .layer(MapResponseLayer::new(move |response| count_rejection(&state, response)))
}

/// Counts every refused request by reason: ours carry [`Rejected`]; axum's own
/// refusals (wrong method, bad upgrade) are named by status.
fn count_rejection(state: &AppState, response: Response) -> Response {
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let reason = match (response.extensions().get::<Rejected>(), status) {
            (Some(Rejected(reason)), _) => reason,
            (None, StatusCode::METHOD_NOT_ALLOWED) => "method_not_allowed",
            (None, StatusCode::PAYLOAD_TOO_LARGE) => "body_too_large",
            (None, StatusCode::NOT_FOUND) => "not_found",
            (None, _) => "bad_request",
        };
        state.metrics.rejected(reason);
    }
    response
}

/// One of the `--max-subscribers` slots, held for as long as a subscriber stays
/// connected. Extracting it fails with 503 and `Retry-After` when all are taken.
#[derive(Debug)]
pub struct SubscriberSlot {
    _permit: OwnedSemaphorePermit,
}

impl FromRequestParts<AppState> for SubscriberSlot {
    type Rejection = AppError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        state
            .subscriber_slots
            .clone()
            .try_acquire_owned()
            .map(|_permit| SubscriberSlot { _permit })
            .map_err(|_| AppError::OverCapacity)
    }
}

/// What a cursor that is not UTF-8 text (in a form, a query or `Last-Event-ID`) is read
/// as: the replacement character, which no cursor contains, so the bus answers with a
/// `malformed` gap notice and the history, as for any other cursor it cannot place.
pub(crate) const NOT_TEXT: &str = "\u{fffd}";

/// `?cursor=ID` on the streaming transports (a query that is not UTF-8 text decodes
/// with replacement characters, so such a cursor is malformed too).
#[derive(Debug, Deserialize)]
pub struct CursorQuery {
    /// The id of the last message the client has.
    pub cursor: Option<String>,
}

/// A JSON answer, typed as Tornado types its own. Built directly: a `String` made into
/// a response is first typed `text/plain`, then retyped.
fn json_response(json: impl Into<Body>) -> Response {
    const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=UTF-8");
    let mut response = Response::new(json.into());
    response.headers_mut().insert(header::CONTENT_TYPE, JSON);
    response
}
