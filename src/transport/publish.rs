//! `POST /a/message/new`: publishing, as Tornado's chat demo does it.
//!
//! Form fields: `body`, `_xsrf`, optional `next`. Answers `200 application/json` with the
//! message object, or, when `next` names a local path, `302` to it (the page's no-script
//! form does that). The message reaches subscribers of every transport. A client that
//! publishes faster than `--publish-rate` allows gets 429 with `Retry-After`
//! ([`super::publish_limit`]).

use axum::BoxError;
use axum::Router;
use axum::body::{Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::form::{Field, NotText};
use super::{AppError, Form};
use crate::AppState;
use crate::server::Connection;

/// Where messages are posted.
pub const PATH: &str = "/a/message/new";

/// The publishing endpoint, for [`super::routes`] to merge (its POSTs are matched in
/// front of the router, as polls are: [`super::App`]).
pub fn routes() -> Router<AppState> {
    let handler =
        |State(state): State<AppState>, connection: Connection, request: Request| publish(state, connection, request);
    Router::new().route(PATH, post(handler))
}

/// One publish, from its request to its answer.
pub(super) async fn publish<B>(
    state: AppState,
    connection: Connection,
    request: Request<B>,
) -> Result<Response, AppError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let form = Form::read(request, &state).await?;
    // Refuse a bad `next` before publishing: a refused request must change nothing.
    let field = |field| form.get(field).map_err(|NotText| AppError::MalformedForm);
    let next = field(Field::Next)?;
    let next = next.as_deref().filter(|next| !next.is_empty()).map(local_path).transpose()?;
    let text = field(Field::Body)?.ok_or(AppError::MissingField("body"))?;
    state.publish_limit.check(connection.peer(), &text).map_err(AppError::RateLimited)?;
    let message = state.bus.publish(text.into_owned()).await?;
    state.metrics.published();
    Ok(match next {
        Some(path) => (StatusCode::FOUND, [(header::LOCATION, path.to_owned())]).into_response(),
        None => super::json_response(message.json.clone()),
    })
}

/// Accepts `next` only as a path on this site: `/x` yes; `//host`, `/\host` (which
/// browsers read as `//host`), `http://…` and control characters no.
fn local_path(next: &str) -> Result<&str, AppError> {
    let local =
        next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') && !next.chars().any(char::is_control);
    if local { Ok(next) } else { Err(AppError::OffsiteRedirect) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        for good in ["/", "/room?x=1", "/a//b"] {
            assert!(local_path(good).is_ok(), "{good}");
        }
        for bad in ["//evil.example", "/\\evil.example", "http://evil.example", "evil", "/a\nb"] {
            assert!(local_path(bad).is_err(), "{bad}");
        }
    }
}
