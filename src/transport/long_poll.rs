//! `POST /a/message/updates`: HTTP long-polling, wire-compatible with Tornado's chat demo.
//!
//! Form fields: `_xsrf`, optional `cursor` (the id of the last message seen). The
//! answer is `{"messages": [ … oldest first … ]}` as soon as anything follows the cursor;
//! until then the request is held open. Each answer carries everything that is ready
//! at that moment, so a burst costs one response, not one per message.
//!
//! An idle poll is answered with `{"messages": []}` after the hold time (default 25 s),
//! below the 30–60 s idle timeouts of proxies, which would otherwise cut it. The client
//! polls again with the same cursor and loses nothing. (Tornado's own `chat.js` treats
//! an empty list as an error and retries after its 1 s back-off: harmless, just slower.)
//!
//! When the cursor is unknown here (evicted, from an earlier run, malformed) the answer
//! also has `"gap": {"reason": …, "missed": N|null, "cursor": …}` and replays all that
//! is retained; old clients ignore the field. `cursor` is where to poll from if the
//! answer has no messages (after a restart of an empty server, say). A client that goes away while its poll is
//! pending drops this handler, and with it its subscription, at once.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;

use super::{AppError, Form, NOT_TEXT, SubscriberSlot};
use crate::AppState;
use crate::bus::Delivery;
use crate::metrics::{Transport, TransportMetrics};
use crate::server::Connection;

/// The long-poll endpoint, for [`super::routes`] to merge.
pub fn routes() -> Router<AppState> {
    Router::new().route("/a/message/updates", post(poll))
}

async fn poll(
    State(state): State<AppState>,
    _slot: SubscriberSlot,
    connection: Connection,
    form: Form,
) -> Result<Response, AppError> {
    // A cursor that is not text is as malformed as any other that points nowhere.
    let cursor = form.get("cursor").unwrap_or(Some(NOT_TEXT)).filter(|c| !c.is_empty());
    let metrics = state.metrics.transport(Transport::LongPoll);
    let _pending = metrics.subscriber();
    let mut subscription = state.bus.subscribe(cursor).await;
    // Nothing of the form is needed while the poll waits, which can be long.
    drop(form);

    let mut answer = Answer::new(metrics);
    tokio::select! {
        // The delivery first: woken by it, the poll does not look at the timers again.
        biased;
        Some(delivery) = subscription.next() => answer.add(delivery),
        () = tokio::time::sleep(state.config.long_poll_hold) => {}
        () = connection.ended() => {}
    }
    while let Some(delivery) = subscription.try_next() {
        answer.add(delivery);
    }
    Ok(super::json_response(answer.into_json()))
}

/// The body of one long-poll answer, `{"messages":[…]}` (plus `"gap"`), written
/// straight from the pre-encoded message objects into one buffer.
struct Answer<'a> {
    metrics: &'a TransportMetrics,
    json: String,
    empty: bool,
    gap: Option<String>,
}

impl<'a> Answer<'a> {
    fn new(metrics: &'a TransportMetrics) -> Self {
        Answer { metrics, json: String::from(r#"{"messages":["#), empty: true, gap: None }
    }

    fn add(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Message(message) => {
                self.metrics.delivered(message.created.elapsed());
                // Room for the separator and the closing `]}` too: one allocation for
                // a one-message answer instead of three.
                self.json.reserve(message.json.len() + 3);
                if !std::mem::take(&mut self.empty) {
                    self.json.push(',');
                }
                self.json.push_str(&message.json);
            }
            // At most one gap per answer in practice; if a second comes, the first
            // (earlier) one is what the client needs to hear about.
            Delivery::Gap(gap) => {
                self.metrics.gap(gap.reason);
                self.gap.get_or_insert_with(|| gap.to_json());
            }
        }
    }

    fn into_json(mut self) -> String {
        self.json.push(']');
        if let Some(gap) = self.gap {
            self.json.push_str(r#","gap":"#);
            self.json.push_str(&gap);
        }
        self.json.push('}');
        self.json
    }
}
