//! The WebSocket closing handshake, with hand-built frames on a raw TCP connection (no
//! client library to smooth anything over): a client's close frame is answered with
//! one (RFC 6455 §5.5.1), and a frame that breaks the protocol gets close 1002 (1007
//! for text that is not UTF-8) before the connection ends (§7.1.7, §7.4.1), even when
//! the socket is backed up: the close frame comes after everything already queued.

mod common;

use std::time::Duration;

use bytes::{Buf, BytesMut};
use common::{TestApp, eventually, spawn_app, within};
use pushwire::Config;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Close codes of RFC 6455 §7.4.1.
const NORMAL: u16 = 1000;
const PROTOCOL_ERROR: u16 = 1002;
const INVALID_PAYLOAD: u16 = 1007;

/// Opcodes of RFC 6455 §5.2.
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// One frame as a client sends it: masked (as a client must), final, no extension bits.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    Frame { fin: true, rsv1: false, opcode, masked: true, payload }.encode()
}

/// A close frame's payload: the code, then the reason.
fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    [&code.to_be_bytes()[..], reason.as_bytes()].concat()
}

/// A frame from the client, every header bit chosen by the test.
struct Frame<'a> {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    masked: bool,
    payload: &'a [u8],
}

impl Frame<'_> {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![u8::from(self.fin) << 7 | u8::from(self.rsv1) << 6 | self.opcode];
        let mask_bit = u8::from(self.masked) << 7;
        match self.payload.len() {
            len @ 0..=125 => bytes.push(mask_bit | len as u8),
            len @ 126..=0xFFFF => {
                bytes.push(mask_bit | 126);
                bytes.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                bytes.push(mask_bit | 127);
                bytes.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if self.masked {
            let key = [0x37, 0xfa, 0x21, 0x3d];
            bytes.extend_from_slice(&key);
            bytes.extend(self.payload.iter().zip(key.iter().cycle()).map(|(byte, k)| byte ^ k));
        } else {
            bytes.extend_from_slice(self.payload);
        }
        bytes
    }
}

/// A frame from the server.
#[derive(Debug)]
struct Received {
    opcode: u8,
    payload: Vec<u8>,
}

/// An upgraded connection driven byte by byte.
struct RawSocket {
    stream: TcpStream,
    /// Bytes read and not yet parsed.
    buffer: BytesMut,
}

impl RawSocket {
    /// Upgrades on a fresh connection and reads the ready frame that opens every socket.
    async fn open(app: &TestApp) -> Self {
        let stream = within("connect", TcpStream::connect(app.addr)).await.expect("connect");
        Self::upgrade(app, stream).await
    }

    /// Upgrades on `stream` by hand (RFC 6455 §4.1), then reads the ready frame.
    async fn upgrade(app: &TestApp, stream: TcpStream) -> Self {
        let mut socket = RawSocket { stream, buffer: BytesMut::new() };
        let request = format!(
            "GET /a/message/socket HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            app.addr
        );
        socket.send(request.as_bytes()).await;
        let head = loop {
            if let Some(end) = socket.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break String::from_utf8(socket.buffer.split_to(end + 4).to_vec()).expect("an ASCII response head");
            }
            assert!(socket.fill().await > 0, "the connection ended during the upgrade");
        };
        assert!(head.starts_with("HTTP/1.1 101 "), "the upgrade was refused: {head}");
        // The accept key of RFC 6455 §1.3's example request key.
        assert!(head.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
        let ready = socket.next_frame().await.expect("the ready frame");
        assert_eq!((ready.opcode, &ready.payload[..]), (TEXT, &br#"{"ready":{"http":"1.1"}}"#[..]), "the first frame");
        socket
    }

    async fn send(&mut self, bytes: &[u8]) {
        within("sending bytes", self.stream.write_all(bytes)).await.expect("send");
    }

    /// Reads what the server sent next into the buffer: how many bytes, 0 at the end.
    async fn fill(&mut self) -> usize {
        let mut chunk = vec![0; 64 * 1024];
        match within("bytes from the server", self.stream.read(&mut chunk)).await {
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                n
            }
            Err(error) => panic!("the connection failed instead of closing: {error}"),
        }
    }

    /// The next frame from the server; `None` if the connection ends between frames.
    async fn next_frame(&mut self) -> Option<Received> {
        loop {
            if let Some(frame) = self.parse() {
                return Some(frame);
            }
            if self.fill().await == 0 {
                assert!(self.buffer.is_empty(), "the connection ended inside a frame: {:?}", self.buffer);
                return None;
            }
        }
    }

    /// Takes one whole frame off the buffer, if it holds one.
    fn parse(&mut self) -> Option<Received> {
        let bytes = &self.buffer[..];
        let (&first, &second) = (bytes.first()?, bytes.get(1)?);
        assert_eq!(first & 0x70, 0, "the server set a reserved bit");
        assert_eq!(first & 0x80, 0x80, "the server fragmented a frame (pushwire sends whole ones)");
        assert_eq!(second & 0x80, 0, "a server frame is masked");
        let (length, header) = match second & 0x7f {
            126 => (u16::from_be_bytes(bytes.get(2..4)?.try_into().expect("2 bytes")) as usize, 4),
            127 => (u64::from_be_bytes(bytes.get(2..10)?.try_into().expect("8 bytes")) as usize, 10),
            length => (length as usize, 2),
        };
        if bytes.len() < header + length {
            return None;
        }
        self.buffer.advance(header);
        let payload = self.buffer.split_to(length).to_vec();
        Some(Received { opcode: first & 0x0f, payload })
    }

    /// Reads up to the server's close frame, skipping pings and pongs, and returns its
    /// code and reason; then checks the connection ends. Panics on anything else, or if the
    /// connection ends without a close frame, naming `case`.
    async fn close_frame(&mut self, case: &str) -> (u16, String) {
        let close = loop {
            match self.next_frame().await {
                Some(Received { opcode: CLOSE, payload }) => {
                    assert!(payload.len() >= 2, "{case}: the close frame carries no code");
                    let reason = String::from_utf8(payload[2..].to_vec()).expect("the close reason is UTF-8");
                    break (u16::from_be_bytes([payload[0], payload[1]]), reason);
                }
                Some(Received { opcode: PING | PONG, .. }) => {}
                Some(other) => panic!("{case}: expected a close frame, got {other:?}"),
                None => panic!("{case}: the connection ended without a close frame (the client sees 1006)"),
            }
        };
        self.expect_end(case).await;
        close
    }

    /// Asserts the server sends nothing more and ends the connection.
    async fn expect_end(&mut self, case: &str) {
        if let Some(frame) = self.next_frame().await {
            panic!("{case}: a frame after the close frame: {frame:?}");
        }
    }
}

/// Sends `bytes` on a fresh socket of a fresh server and asserts the server answers
/// with close `code`, counted under `label` (if any), having published nothing.
async fn assert_closed_with(case: &str, bytes: &[u8], code: u16, label: Option<&str>) {
    let app = spawn_app(Config::default()).await;
    let mut socket = RawSocket::open(&app).await;
    socket.send(bytes).await;
    let (closed_with, reason) = socket.close_frame(case).await;
    assert_eq!(closed_with, code, "{case}: {reason}");
    if let Some(label) = label {
        assert!(!reason.is_empty(), "{case}: the close frame does not say why");
        let rejected = format!("pushwire_requests_rejected_total{{reason=\"{label}\"}}");
        assert_eq!(app.metric(&rejected), 1.0, "{case}: not counted as {label}");
    }
    assert!(app.history().await.is_empty(), "{case}: the frame published a message");
}

async fn assert_protocol_error(case: &str, bytes: &[u8]) {
    assert_closed_with(case, bytes, PROTOCOL_ERROR, Some("ws_protocol")).await;
}

#[tokio::test]
async fn a_clean_close_is_answered_with_a_close_frame_echoing_its_code() {
    let close = frame(CLOSE, &close_payload(NORMAL, "bye"));
    assert_closed_with("close 1000", &close, NORMAL, None).await;
}

#[tokio::test]
async fn a_close_with_an_application_code_is_answered_with_that_code() {
    let close = frame(CLOSE, &close_payload(4000, "switching rooms"));
    assert_closed_with("close 4000", &close, 4000, None).await;
}

#[tokio::test]
async fn a_close_without_a_code_is_answered_with_an_empty_close_frame() {
    let app = spawn_app(Config::default()).await;
    let mut socket = RawSocket::open(&app).await;
    socket.send(&frame(CLOSE, &[])).await;
    let reply = socket.next_frame().await.expect("the connection ended without a close frame");
    assert_eq!((reply.opcode, reply.payload.len()), (CLOSE, 0), "an empty close is echoed empty: {reply:?}");
    socket.expect_end("empty close").await;
}

#[tokio::test]
async fn a_close_code_that_is_not_allowed_on_the_wire_is_answered_with_1002() {
    let close = frame(CLOSE, &close_payload(999, ""));
    assert_closed_with("close code 999", &close, PROTOCOL_ERROR, None).await;
}

#[tokio::test]
async fn a_close_frame_with_a_one_byte_payload_is_answered_with_1002() {
    assert_protocol_error("1-byte close payload", &frame(CLOSE, &[0x03])).await;
}

#[tokio::test]
async fn an_unmasked_client_frame_is_closed_with_1002() {
    let unmasked = Frame { fin: true, rsv1: false, opcode: TEXT, masked: false, payload: br#"{"body":"hi"}"# };
    assert_protocol_error("unmasked frame", &unmasked.encode()).await;
}

#[tokio::test]
async fn a_reserved_bit_without_an_extension_is_closed_with_1002() {
    let rsv1 = Frame { fin: true, rsv1: true, opcode: TEXT, masked: true, payload: br#"{"body":"hi"}"# };
    assert_protocol_error("RSV1 without an extension", &rsv1.encode()).await;
}

#[tokio::test]
async fn text_that_is_not_utf8_is_closed_with_1007() {
    let text = frame(TEXT, b"{\"body\":\"\xff\xfe\"}");
    assert_closed_with("invalid UTF-8 text", &text, INVALID_PAYLOAD, Some("ws_not_utf8")).await;
}

#[tokio::test]
async fn a_ping_over_125_bytes_is_closed_with_1002() {
    assert_protocol_error("126-byte ping", &frame(PING, &[b'p'; 126])).await;
}

#[tokio::test]
async fn a_fragmented_ping_is_closed_with_1002() {
    let ping = Frame { fin: false, rsv1: false, opcode: PING, masked: true, payload: b"ping" };
    assert_protocol_error("fragmented ping", &ping.encode()).await;
}

#[tokio::test]
async fn a_reserved_opcode_is_closed_with_1002() {
    assert_protocol_error("opcode 3", &frame(0x3, br#"{"body":"hi"}"#)).await;
}

#[tokio::test]
async fn a_continuation_with_nothing_to_continue_is_closed_with_1002() {
    assert_protocol_error("continuation without a start", &frame(CONTINUATION, br#"{"body":"hi"}"#)).await;
}

#[tokio::test]
async fn a_new_message_before_the_fragmented_one_ends_is_closed_with_1002() {
    let start = Frame { fin: false, rsv1: false, opcode: TEXT, masked: true, payload: br#"{"body":"# };
    let bytes = [start.encode(), frame(TEXT, br#"{"body":"hi"}"#)].concat();
    assert_protocol_error("a text frame inside a fragmented message", &bytes).await;
}

/// A client that stops reading while messages pile up, then closes and reads: it gets
/// every message queued for it, whole and in order, then the close frame, then the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backed_up_socket_gets_its_close_frame_after_everything_queued() {
    /// Enough to fill the kernel's buffers (the server's send buffer grows to a few
    /// MiB) many times over; publishing stops once bytes wait in the server.
    const MOST: usize = 20_000;
    let config = Config {
        // Nothing is let go or cut off: every message waits in the outbox.
        outbound_limit: 256 * 1024 * 1024,
        slow_consumer_timeout: Duration::from_secs(60),
        history: MOST,
        ..Config::default()
    };
    let app = spawn_app(config).await;
    // A tiny receive buffer: the server's writes back up soon after the client stops.
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("shrink the receive buffer");
    let stream = within("connect", socket.connect(app.addr)).await.expect("connect");
    let mut client = RawSocket::upgrade(&app, stream).await;
    app.wait_for_open_subscriptions(1).await;

    // About 2 KiB each on the wire (the body is sent as `body` and as `html`).
    let body = "z".repeat(1024);
    let mut published = 0;
    while app.metric("pushwire_fanout_deferred_writes_total") < 1.0 {
        assert!(published < MOST, "the socket never backed up");
        for _ in 0..100 {
            app.state.bus.publish(body.clone()).await.expect("publish");
        }
        published += 100;
    }
    // A few more behind the ones already waiting, and all of them in the outbox.
    for _ in 0..100 {
        app.state.bus.publish(body.clone()).await.expect("publish");
    }
    published += 100;
    let deliveries = "pushwire_deliveries_total{transport=\"websocket\"}";
    eventually("every message to be queued for the backed-up socket", || {
        let queued = app.metric(deliveries);
        if queued == published as f64 { Ok(()) } else { Err(format!("{queued} of {published} queued")) }
    })
    .await;

    client.send(&frame(CLOSE, &close_payload(NORMAL, "done"))).await;
    let mut seqs = Vec::new();
    let code = loop {
        match client.next_frame().await {
            Some(Received { opcode: TEXT, payload }) => {
                let json: Value = serde_json::from_slice(&payload).expect("a JSON frame");
                seqs.push(json["seq"].as_u64().expect("a message with a seq"));
            }
            Some(Received { opcode: CLOSE, payload }) => break u16::from_be_bytes([payload[0], payload[1]]),
            Some(Received { opcode: PING | PONG, .. }) => {}
            Some(other) => panic!("unexpected frame {other:?}"),
            None => panic!("the connection ended without a close frame after {} messages", seqs.len()),
        }
    };
    assert_eq!(seqs, (1..=published as u64).collect::<Vec<_>>(), "missed, repeated or reordered");
    assert_eq!(code, NORMAL);
    client.expect_end("backed-up close").await;
}
