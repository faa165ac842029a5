//! `POST /a/message/updates`: HTTP long-polling, wire-compatible with Tornado's chat demo.
//!
//! Form fields: `_xsrf`, optional `cursor` (the id of the last message seen). The
//! answer is `{"messages": [ … oldest first … ]}` as soon as anything follows the cursor;
//! until then the request is held open. Each answer carries everything that is ready
//! at that moment, so a burst costs one response, not one per message.
//!
//! An idle poll is answered with `{}` after the hold time (default 25 s; one sweep
//! answers every poll whose hold is over, at most a twenty-fifth of it late: [`hold`]),
//! below the 30–60 s idle timeouts of proxies, which would otherwise cut it: nothing
//! new; the client polls again with the same cursor and loses nothing. Not `{"messages": []}`:
//! Tornado's own `chat.js` takes an empty list for an error and doubles its wait each
//! time, so after twenty idle minutes a message would show minutes late.
//!
//! When the cursor is unknown here (evicted, from an earlier run, malformed) the answer
//! also has `"gap": {"reason": …, "missed": N|null, "cursor": …}` and replays all that
//! is retained; old clients ignore the field. `cursor` is where to poll from if the
//! answer has no messages (after a restart of an empty server, say). A client that goes away while its poll is
//! pending drops this handler, and with it its subscription, at once.
//!
//! At a graceful stop a pending poll is answered at once with what is ready and
//! `"reconnect": {"reason": "server_restart", "delay_ms": N}`: when to poll again, a delay
//! of its own (module `reconnect`), so that the clients do not all come back together.
//! When every subscriber slot is taken, a poll gets 503 with `Retry-After` (3 to 8 s,
//! drawn per refusal).
//!
//! Most requests of a long-poll server are polls, so [`super::App`] hands them to
//! [`poll`] before the router's generic work; the router has the route too, for the
//! other methods' 405.

mod hold;

use std::sync::Arc;

use bytes::BytesMut;
use smallvec::SmallVec;

use axum::BoxError;
use axum::Router;
use axum::body::Bytes;
use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::post;

pub use hold::HoldSweep;

use super::form::Field;
use super::reconnect::Reconnect;
use super::{AppError, Form, SubscriberSlot};
use crate::AppState;
use crate::bus::{Delivery, Message, ResumeFrom, WireForm};
use crate::metrics::{Http, Transport, TransportMetrics};

/// Where polls are posted.
pub const PATH: &str = "/a/message/updates";

/// The long-poll endpoint, for [`super::routes`] to merge.
pub fn routes() -> Router<AppState> {
    Router::new().route(PATH, post(|State(state): State<AppState>, request: Request| poll(state, request)))
}

/// One poll, from its request to its answer.
pub(super) async fn poll<B>(state: AppState, request: Request<B>) -> Result<Response, AppError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let _slot = SubscriberSlot::take(&state).map_err(AppError::OverCapacity)?;
    let version = request.version();
    let form = Form::read(request, &state).await?;
    let cursor = form.get(Field::Cursor);
    let from = ResumeFrom::parse(cursor.as_ref().map(|cursor| cursor.as_deref()));
    let metrics = state.metrics.transport(Transport::LongPoll);
    let _pending = metrics.subscriber(Http::of(version));
    let mut subscription = state.bus.subscribe_from(from).await;
    // Nothing of the form is needed while the poll waits, which can be long.
    drop(form);

    let mut answer = Answer::new(metrics);
    tokio::select! {
        // The delivery first: woken by it, the poll does not look at its hold again.
        biased;
        Some(delivery) = subscription.next() => answer.add(delivery),
        // Also over at once when the server is stopping.
        () = state.held_polls.over(&state) => {}
    }
    while let Some(delivery) = subscription.try_next() {
        answer.add(delivery);
    }
    if state.shutdown.is_cancelled() {
        answer.reconnect = Some(Reconnect::restart(&state.config).json());
    }
    Ok(super::json_response(answer.into_body()))
}

/// The answer when a message is the only one in it, `{"messages":[json]}`: every poll
/// waiting at the same cursor is answered with these same bytes.
static ALONE: WireForm =
    WireForm::new(|message| Bytes::from([&br#"{"messages":["#[..], &message.json, b"]}"].concat()));

/// The answer to a poll held its whole hold time: nothing new (see the module docs).
const IDLE: &[u8] = b"{}";

/// One long-poll answer, `{"messages":[…]}` (plus `"gap"`, `"reconnect"`): the
/// messages ready when the poll is answered, oldest first.
struct Answer<'a> {
    metrics: &'a TransportMetrics,
    messages: SmallVec<[Arc<Message>; 1]>,
    gap: Option<String>,
    reconnect: Option<String>,
}

impl<'a> Answer<'a> {
    fn new(metrics: &'a TransportMetrics) -> Self {
        Answer { metrics, messages: SmallVec::new(), gap: None, reconnect: None }
    }

    fn add(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Message(message) => {
                self.metrics.delivered(message.created.elapsed());
                self.messages.push(message);
            }
            // At most one gap per answer in practice; if a second comes, the first
            // (earlier) one is what the client needs to hear about.
            Delivery::Gap(gap) => {
                self.gap.get_or_insert_with(|| gap.to_json());
                self.metrics.gap(gap.reason);
            }
        }
    }

    /// The body: one message alone is the answer it carries pre-built (the same bytes
    /// for every poll waiting at that cursor); otherwise written from the message
    /// objects into one buffer.
    fn into_body(self) -> Bytes {
        match (&self.messages[..], &self.gap, &self.reconnect) {
            ([message], None, None) => return message.wire(&ALONE).clone(),
            ([], None, None) => return Bytes::from_static(IDLE),
            _ => {}
        }
        let notices = self.gap.as_ref().map_or(0, String::len) + self.reconnect.as_ref().map_or(0, String::len);
        // 48: the brackets and the field names.
        let size = self.messages.iter().map(|m| m.json.len() + 1).sum::<usize>() + notices + 48;
        let mut json = BytesMut::with_capacity(size);
        json.extend_from_slice(br#"{"messages":["#);
        for (i, message) in self.messages.iter().enumerate() {
            if i > 0 {
                json.extend_from_slice(b",");
            }
            json.extend_from_slice(&message.json);
        }
        json.extend_from_slice(b"]");
        if let Some(gap) = self.gap {
            json.extend_from_slice(br#","gap":"#);
            json.extend_from_slice(gap.as_bytes());
        }
        if let Some(reconnect) = self.reconnect {
            json.extend_from_slice(br#","reconnect":"#);
            json.extend_from_slice(reconnect.as_bytes());
        }
        json.extend_from_slice(b"}");
        json.freeze()
    }
}
