//! The HTTP surface: one module per transport, each a thin adapter over [`crate::bus`].
//!
//! | module        | endpoint                                  | direction          |
//! |---------------|-------------------------------------------|--------------------|
//! | [`publish`]   | `POST /a/message/new`                     | client → bus       |
//! | [`long_poll`] | `POST /a/message/updates`                 | bus → client       |
//! | [`websocket`] | `GET /a/message/socket`                   | both ways          |
//! | [`sse`]       | `GET /a/message/events`                   | bus → client       |
//! | [`page`]      | `GET /`, `GET /static/…`                  | the browser client |
//!
//! A new transport is one new module and one `.merge` below.

mod error;
mod form;
pub mod long_poll;
pub mod page;
pub mod publish;
pub mod sse;
pub mod websocket;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

pub use error::AppError;
pub use form::Form;

use crate::AppState;

/// All routes, with the request-size guard shared by the POST endpoints.
pub fn routes(max_body: usize) -> Router<AppState> {
    Router::new()
        .merge(page::routes())
        .merge(publish::routes())
        .merge(long_poll::routes())
        .merge(websocket::routes())
        .merge(sse::routes())
        // Percent-encoding can triple a body; the bus enforces the exact limit on the
        // decoded text, this only stops absurd uploads before they are buffered.
        .layer(DefaultBodyLimit::max(max_body * 3 + 4096))
}

/// `?cursor=ID` on the streaming transports.
#[derive(Debug, Deserialize)]
pub struct CursorQuery {
    pub cursor: Option<String>,
}

/// A JSON answer, typed as Tornado types its own.
fn json_response(json: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json; charset=UTF-8")], json).into_response()
}
