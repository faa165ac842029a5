//! WebTransport clients that misbehave: an unknown `order`, thousands of publish
//! streams left open, a publish stream that never finishes, datagrams and streams the
//! contract has no use for, and handshakes abandoned or refused. Each is refused and
//! counted, the sessions of everyone else go on, and no session is left counted.

mod common;

use std::time::Duration;

use common::webtransport::{answer, spawn_webtransport_app};
use common::{eventually, within};
use pushwire::Config;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use wtransport::error::{ConnectingError, StreamWriteError};
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection, Endpoint, RecvStream, SendStream};

/// `pushwire_requests_rejected_total` for `reason`.
fn rejected(reason: &str) -> String {
    format!("pushwire_requests_rejected_total{{reason=\"{reason}\"}}")
}

#[tokio::test]
async fn an_order_other_than_seq_or_none_is_refused_and_counted() {
    let app = spawn_webtransport_app(Config::default()).await;
    for query in ["?order=bogus", "?order=", "?order=NONE&cursor=0123456789abcdef-1"] {
        let refused = app.webtransport_session(query, None).await.err();
        assert!(matches!(refused, Some(ConnectingError::SessionRejected)), "{query}: {refused:?}");
    }
    assert_eq!(app.metric(&rejected("bad_order")), 3.0);
    assert_eq!(app.metric(&rejected("not_found")), 0.0, "counted as bad_order only");
    // `seq` is the default said aloud: the ready line is the default's.
    let session = app.webtransport("?order=seq").await;
    session.session.close(0u32.into(), b"bye");
    app.no_webtransport_subscriber().await;
}

#[tokio::test]
async fn thousands_of_publish_streams_left_open_are_reset_past_the_sixteenth() {
    // Long enough that the first 16 keep their places for the whole test.
    let config = Config { body_timeout: Duration::from_secs(60), ..Config::default() };
    let app = spawn_webtransport_app(config).await;
    let mut witness = app.webtransport("").await;
    let flooder = app.webtransport_session("", None).await.expect("a session");
    // None is finished. The server takes streams in the order they were opened: the
    // first 16 wait for their bodies, every later one is stopped and reset. quinn lets
    // a client have 100 streams open at once, so the client gets credit for all 2,000
    // only if the server lets go of each it refuses (the client drops a stream once it
    // is stopped, which resets it).
    const OPENED: usize = 2_000;
    let mut held = Vec::with_capacity(16);
    for _ in 0..16 {
        held.push(open_publish_stream(&flooder).await);
    }
    let mut refused = JoinSet::new();
    for _ in 16..OPENED {
        let (mut send, recv) = open_publish_stream(&flooder).await;
        refused.spawn(async move {
            let _recv = recv;
            send.stopped().await
        });
    }
    while let Some(stopped) = within("the server to stop a stream", refused.join_next()).await {
        let stopped = stopped.expect("the waiting task");
        assert!(matches!(stopped, StreamWriteError::Stopped(code) if code.into_inner() == 1013), "{stopped:?}");
    }
    let reset = (OPENED - 16) as f64;
    assert_eq!(app.metric(&rejected("webtransport_too_many_streams")), reset);
    let sent = app.browser().await.publish("still served").await;
    assert_eq!(witness.next_json().await, sent);
    drop(held);
    flooder.close(0u32.into(), b"bye");
    witness.session.close(0u32.into(), b"bye");
    app.no_webtransport_subscriber().await;
}

/// A publish stream, opened once the server gives credit for one more.
async fn open_publish_stream(session: &Connection) -> (SendStream, RecvStream) {
    let opening = within("credit for one more stream", session.open_bi()).await.expect("open a stream");
    within("the stream", opening).await.expect("a stream")
}

#[tokio::test]
async fn a_publish_stream_that_never_finishes_is_answered_body_timeout() {
    let config = Config { body_timeout: Duration::from_millis(300), ..Config::default() };
    let app = spawn_webtransport_app(config).await;
    let mut session = app.webtransport("").await;
    let (_left_open, recv) = session.publish_stream(br#"{"body":"never fin"#, false).await;
    let refused = answer(recv).await;
    assert_eq!(refused["error"]["reason"], "body_timeout", "{refused}");
    assert_eq!(app.metric(&rejected("body_timeout")), 1.0);
    assert!(app.history().await.is_empty(), "nothing was published");
    let sent = session.publish_raw(br#"{"body":"the session goes on"}"#).await;
    assert_eq!(session.next_json().await, sent);
    session.session.close(0u32.into(), b"bye");
    app.no_webtransport_subscriber().await;
}

#[tokio::test]
async fn datagrams_and_streams_of_the_client_are_counted_and_the_session_goes_on() {
    let app = spawn_webtransport_app(Config::default()).await;
    let mut session = app.webtransport("").await;
    for _ in 0..3 {
        let opening = within("a stream to the server", session.session.open_uni()).await.expect("open");
        let mut stream = within("the stream", opening).await.expect("a stream");
        // The server stops it: writing may fail, and that is its answer.
        let _ = within("writing", stream.write_all(b"not part of the contract")).await;
        let _ = within("finishing", stream.finish()).await;
    }
    eventually("3 streams counted", || app.metric(&rejected("webtransport_uni_stream")) == 3.0).await;
    // A datagram may be lost on the way: sent again until one is counted.
    eventually("a datagram counted", || {
        session.session.send_datagram(b"not part of the contract").expect("send a datagram");
        app.metric(&rejected("webtransport_datagram")) > 0.0
    })
    .await;
    let sent = session.publish_raw(br#"{"body":"the session goes on"}"#).await;
    assert_eq!(session.next_json().await, sent);
    session.session.close(0u32.into(), b"bye");
    app.no_webtransport_subscriber().await;
}

#[tokio::test]
async fn handshakes_abandoned_or_refused_are_counted_and_others_still_served() {
    let config = Config { header_timeout: Duration::from_millis(500), ..Config::default() };
    let app = spawn_webtransport_app(config).await;
    let raw = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    // Not QUIC: no connection comes of it, so nothing to count.
    for garbage in [&[0u8; 40][..], &[0xc3; 1200]] {
        raw.send_to(garbage, app.addr).await.expect("send garbage");
    }
    // A client's first packet and nothing more: the handshake never ends, and
    // `--header-timeout` ends it.
    raw.send_to(&client_initial().await, app.addr).await.expect("send an Initial");
    // A client that refuses the server's certificate, as a browser pinning another hash.
    let refused = connect_pinning(&app.addr.to_string(), [0; 32]).await;
    assert!(refused.is_err(), "a client pinning another hash was served");
    let handshake = rejected("webtransport_handshake");
    eventually("both handshakes counted", || match app.metric(&handshake) {
        2.0 => Ok(()),
        n => Err(format!("{n} counted")),
    })
    .await;
    let mut witness = app.webtransport("").await;
    let sent = app.browser().await.publish("still served").await;
    assert_eq!(witness.next_json().await, sent);
    witness.session.close(0u32.into(), b"bye");
    app.no_webtransport_subscriber().await;
    assert_eq!(app.metric(&handshake), 2.0, "only the two counted");
}

/// Connects to `authority` pinning certificate hash `sha256`.
async fn connect_pinning(authority: &str, sha256: [u8; 32]) -> Result<Connection, ConnectingError> {
    let config =
        ClientConfig::builder().with_bind_default().with_server_certificate_hashes([Sha256Digest::new(sha256)]).build();
    let endpoint = Endpoint::client(config).expect("a client endpoint");
    within("the handshake", endpoint.connect(format!("https://{authority}/a/message/webtransport"))).await
}

/// The first datagram a WebTransport client sends (its QUIC Initial), caught by a
/// socket that never answers.
async fn client_initial() -> Vec<u8> {
    let catcher = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    let authority = catcher.local_addr().expect("an address").to_string();
    let mut datagram = vec![0; 65_536];
    tokio::select! {
        received = within("the client's first packet", catcher.recv_from(&mut datagram)) => {
            datagram.truncate(received.expect("receive").0);
        }
        connected = connect_pinning(&authority, [0; 32]) => panic!("a socket that never answers answered: {connected:?}"),
    }
    datagram
}
