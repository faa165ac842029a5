//! The HTTP surface: one module per transport, each a thin adapter over [`crate::bus`].
//!
//! | module        | endpoint                                  | direction          |
//! |---------------|-------------------------------------------|--------------------|
//! | [`publish`]   | `POST /a/message/new`                     | client → bus       |
//! | [`long_poll`] | `POST /a/message/updates`                 | bus → client       |
//! | [`websocket`] | `GET /a/message/socket` (HTTP/2: `CONNECT`) | both ways        |
//! | [`sse`]       | `GET /a/message/events`                   | bus → client       |
//! | [`webtransport`] | `/a/message/webtransport` over HTTP/3 (UDP) | both ways       |
//! | [`page`]      | `GET /`, `GET /static/…`                  | the browser client |
//! | `wire_size`   | `POST /a/message/wire-size`               | the page's byte count |
//! | [`crate::metrics`] | `GET /metrics`                       | Prometheus         |
//!
//! Every subscriber holds a [`SubscriberSlot`] (the connection cap) and reads where to
//! start with [`Resume`] (or, for long-poll, from its form), so every transport resumes
//! the same way. Every publish path asks [`PublishLimit`] first, and every transport
//! tells its clients when to come back the same way (`reconnect`): at a graceful stop,
//! and when it has no slot for them. The streaming transports share the fan-out (`fanout`): one task per
//! worker thread hands every new message to all their connections, and one watchdog
//! applies the slow-consumer policy.
//!
//! # Adding a transport
//! 1. A module here with its `routes()`, its handler and its encoding: a `static`
//!    [`crate::bus::WireForm`] for messages (the bus caches it on each message).
//! 2. If it streams, a `Sink` for it in the same module (how its bytes leave, its gap
//!    notice and its slow notice); its connection opens an outbox with `Fanout::open`,
//!    catches up with `Outbox::catch_up` and joins with `Fanout::join`.
//! 3. If clients publish on it, each publish asks [`PublishLimit::check`] first; its
//!    refusal at capacity and its last words at a graceful stop say when to come back
//!    ([`reconnect`]), in its own encoding.
//! 4. One `.merge` in [`routes`] and one [`crate::metrics::Transport`] variant.
//! 5. One file in `static/transports/` and one line in `static/transports/index.js`.

mod error;
mod fanout;
mod form;
pub mod long_poll;
mod origin;
pub mod page;
pub mod publish;
pub mod publish_limit;
pub mod reconnect;
pub mod sse;
pub mod websocket;
pub mod webtransport;
mod wire_size;

use axum::BoxError;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use futures::future::Either::{Left, Right};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tower::util::MapResponseLayer;
use tower::{Service, ServiceExt as _};

pub use error::{AppError, Rejected};
pub(crate) use fanout::Fanout;
pub use form::Form;
pub use publish_limit::PublishLimit;

use crate::AppState;
use crate::bus::ResumeFrom;
use crate::server::Connection;
use reconnect::Reconnect;

/// The whole HTTP application: axum's router, with the POSTs of every long-poll
/// exchange (the poll and the publish) matched in front of it. They are most of a
/// long-poll server's requests, and the router's generic work (its path lookup, the
/// path parameters' map, a boxed service and future, the content length) was a
/// seventh of each exchange; hyper sets the content length itself.
#[derive(Clone, Debug)]
pub struct App {
    router: Router,
    state: AppState,
}

impl App {
    /// The application around `state`.
    pub fn new(state: AppState) -> Self {
        App { router: routes(state.clone()).with_state(state.clone()), state }
    }

    /// Answers one request that came on `connection`. Not an `async fn`: its future is
    /// only as large as the handler's it chose (hyper moves it a few times per request).
    pub fn handle<B>(self, mut request: Request<B>, connection: Connection) -> impl Future<Output = Response> + Send
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let state = self.state.clone();
        // What the router's layer does for the others.
        let counted = move |response: Result<Response, AppError>| count_rejection(&state, response.into_response());
        match (request.method(), request.uri().path()) {
            (&Method::POST, long_poll::PATH) => Left(Left(long_poll::poll(self.state, request).map(counted))),
            (&Method::POST, publish::PATH) => {
                Left(Right(publish::publish(self.state, connection, request).map(counted)))
            }
            _ => {
                request.extensions_mut().insert(connection);
                // Boxed: the hot paths' futures need not be as large as the router's.
                let routed = self.router.oneshot(request.map(Body::new));
                Right(Box::pin(routed.map(|response| response.unwrap_or_else(|never| match never {}))))
            }
        }
    }
}

/// For tests and benchmarks that send requests without a socket (`oneshot`).
impl<B> Service<Request<B>> for App
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (app, connection) = (self.clone(), Connection::unknown(&self.state));
        Box::pin(async move { Ok(app.handle(request, connection).await) })
    }
}

/// All routes, with the layers every request goes through.
fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .merge(page::routes())
        .merge(publish::routes())
        .merge(long_poll::routes())
        .merge(websocket::routes())
        .merge(sse::routes())
        .merge(webtransport::routes())
        .merge(wire_size::routes())
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

/// The `--max-subscribers` slots: how many subscribers are connected now, counted with
/// one atomic (a semaphore's release takes a lock, and every poll's answer releases one).
#[derive(Debug)]
pub struct SubscriberSlots {
    taken: AtomicUsize,
    max: usize,
}

impl SubscriberSlots {
    /// `max` slots, all free.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(SubscriberSlots { taken: AtomicUsize::new(0), max })
    }

    /// How many are held now.
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::Relaxed)
    }
}

/// One of the `--max-subscribers` slots, held for as long as a subscriber stays
/// connected. Taking it fails when all are taken: long-poll answers 503 with
/// `Retry-After`, the streaming transports say it in-band.
#[derive(Debug)]
pub struct SubscriberSlot {
    slots: Arc<SubscriberSlots>,
}

impl SubscriberSlot {
    /// A free slot, or when to come back for one. Cheap either way: one atomic
    /// operation, and a random draw when refused.
    fn take(state: &AppState) -> Result<Self, Reconnect> {
        let slots = &state.subscriber_slots;
        slots
            .taken
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |taken| (taken < slots.max).then_some(taken + 1))
            .map(|_| SubscriberSlot { slots: Arc::clone(slots) })
            .map_err(|_| Reconnect::over_capacity())
    }
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        self.slots.taken.fetch_sub(1, Ordering::Release);
    }
}

/// Where a streaming request resumes: `Last-Event-ID` (which `EventSource` sends when
/// it reconnects), else `?cursor=ID`. A header that is not text (bytes beyond ASCII) or
/// a query that does not decode to a cursor is [`ResumeFrom::Malformed`], never none.
#[derive(Clone, Copy, Debug)]
pub struct Resume(pub ResumeFrom);

/// `?cursor=ID` (a query that is not UTF-8 decodes with replacement characters, which
/// no cursor contains).
#[derive(Debug, Deserialize)]
struct CursorQuery {
    cursor: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Resume {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let header = parts.headers.get("last-event-id").filter(|value| !value.is_empty());
        if let Some(value) = header {
            return Ok(Resume(ResumeFrom::parse(value.to_str().map(Some))));
        }
        Ok(Resume(resume_from_query(&parts.uri)))
    }
}

/// Where `?cursor=ID` in `uri` says to resume.
fn resume_from_query(uri: &axum::http::Uri) -> ResumeFrom {
    let query = Query::<CursorQuery>::try_from_uri(uri);
    ResumeFrom::parse(query.as_ref().map(|Query(q)| q.cursor.as_deref()))
}

/// A JSON answer, typed as Tornado types its own. Built directly: a `String` made into
/// a response is first typed `text/plain`, then retyped.
fn json_response(json: impl Into<Body>) -> Response {
    const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=UTF-8");
    let mut response = Response::new(json.into());
    response.headers_mut().insert(header::CONTENT_TYPE, JSON);
    response
}
