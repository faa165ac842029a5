//! Micro-benchmarks of what each transport puts on the wire for one message:
//! building a message (its JSON object, shared by every transport, which each frames
//! once per message through its own wire form), framing it for WebSocket, and a whole
//! long-poll answer through the router (form parsing, XSRF check, subscribe, JSON).
//!
//! `cargo bench --bench encoding`

use std::hint::black_box;

use axum::body::Body;
use axum::http::{Request, header};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::BodyExt;
use pushwire::bus::{Cursor, Epoch, Message};
use pushwire::{AppState, Config, app};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tower::ServiceExt;

const SIZES: [usize; 3] = [64, 1024, 16 * 1024];
const XSRF: &str = "5e11c0de5e11c0de5e11c0de5e11c0de";

fn message(c: &mut Criterion) {
    let epoch = Epoch::random();
    let mut group = c.benchmark_group("encode/message-json");
    for size in SIZES {
        let body = "x".repeat(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.iter(|| Message::new(Cursor { epoch, seq: 42 }, black_box(body.clone()), 1_700_000_000_000));
        });
    }
    group.finish();
}

fn websocket_frame(c: &mut Criterion) {
    let epoch = Epoch::random();
    let mut group = c.benchmark_group("encode/websocket-frame");
    for size in SIZES {
        let message = Message::new(Cursor { epoch, seq: 42 }, "x".repeat(size), 1_700_000_000_000);
        let json = message.json.clone();
        let mut out = Vec::with_capacity(json.len() + 16);
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| {
                out.clear();
                Frame::message(json.clone(), OpCode::Data(Data::Text), true).format(&mut out).expect("format");
                black_box(&out);
            });
        });
    }
    group.finish();
}

fn long_poll_answer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("build a tokio runtime");
    let mut group = c.benchmark_group("encode/long-poll-answer");
    // An answer of 1 and of 10 waiting messages: the batch a slow poller collects.
    for waiting in [1usize, 10] {
        let state = AppState::new(Config::default());
        let cursor = rt.block_on(state.bus.publish("start".into())).expect("publish").id.clone();
        for i in 0..waiting {
            rt.block_on(state.bus.publish(format!("message {i}"))).expect("publish");
        }
        let router = app(state);
        group.throughput(Throughput::Elements(waiting as u64));
        group.bench_function(BenchmarkId::from_parameter(waiting), |b| {
            b.iter(|| {
                let request = Request::post("/a/message/updates")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(header::COOKIE, format!("_xsrf={XSRF}"))
                    .body(Body::from(format!("_xsrf={XSRF}&cursor={cursor}")))
                    .expect("a valid request");
                let response = rt.block_on(router.clone().oneshot(request)).expect("infallible");
                assert!(response.status().is_success(), "{}", response.status());
                black_box(rt.block_on(response.into_body().collect()).expect("body").to_bytes())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, message, websocket_frame, long_poll_answer);
criterion_main!(benches);
