//! The application as a `tower::Service`, driven without sockets
//! (`tower::ServiceExt::oneshot`): for status-code contracts, where what matters is
//! the answer to one request, not what crosses a connection.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use pushwire::bus::Message;
use pushwire::{AppState, Config, app};
use serde_json::Value;
use tower::ServiceExt;

use super::xsrf_from_set_cookie;

/// One request's answer, read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    /// The body as JSON, after checking it is a `200 application/json` answer.
    pub(crate) fn json(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        assert_eq!(super::content_type(&self.headers), "application/json");
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

/// A server's router and state, with a page-holding client's cookie.
pub(crate) struct RouterApp {
    pub state: AppState,
    /// The `_xsrf` token of the cookie `GET /` handed out.
    pub xsrf: String,
}

impl RouterApp {
    /// The app with `config`, after one `GET /` for the cookie.
    pub(crate) async fn new(config: Config) -> Self {
        let mut router = RouterApp { state: AppState::new(super::for_tests(config)), xsrf: String::new() };
        let page = router.send(Request::get("/").body(Body::empty()).expect("a request")).await;
        router.xsrf = xsrf_from_set_cookie(&page.headers).expect("GET / sets the _xsrf cookie");
        router
    }

    /// Sends one request through a fresh router over the same state.
    pub(crate) async fn send(&self, request: Request<Body>) -> Answer {
        let response = app(self.state.clone()).oneshot(request).await.expect("the router is infallible");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("the body is read").to_bytes();
        Answer { status: parts.status, headers: parts.headers, text: String::from_utf8_lossy(&bytes).into_owned() }
    }

    /// A form POST to `path` carrying `cookie` (None: no cookie at all) and `headers`.
    pub(crate) fn form_request(
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
        form: impl Into<Body>,
    ) -> Request<Body> {
        let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, format!("_xsrf={cookie}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(form.into()).expect("a valid request")
    }

    /// POSTs `fields` with this client's cookie.
    pub(crate) async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        self.send(Self::form_request(path, Some(&self.xsrf), &[], encode(fields))).await
    }

    /// Publishes `body` with the token as a form field; returns the message object.
    pub(crate) async fn publish(&self, body: &str) -> Value {
        self.post("/a/message/new", &[("body", body), ("_xsrf", &self.xsrf)]).await.json()
    }

    /// Every message the bus holds, oldest first (did a refused request publish?).
    pub(crate) async fn history(&self) -> Vec<Arc<Message>> {
        super::history(&self.state).await
    }
}

/// `fields` as an `application/x-www-form-urlencoded` body.
pub(crate) fn encode(fields: &[(&str, &str)]) -> String {
    let pairs: Vec<String> = fields
        .iter()
        .map(|(name, value)| {
            format!("{}={}", utf8_percent_encode(name, NON_ALPHANUMERIC), utf8_percent_encode(value, NON_ALPHANUMERIC))
        })
        .collect();
    pairs.join("&")
}
