//! Micro-benchmarks of the bus: publishing, resolving a cursor (subscribing from a
//! message id, which is what every reconnect and every long-poll does), and fan-out
//! of one message to N in-process subscribers. Before/after numbers for lock and
//! allocation changes on the delivery path come from here.
//!
//! `cargo bench --bench bus`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pushwire::bus::{Bus, Delivery, ResumeFrom};
use tokio::runtime::Runtime;

/// pushwire's default history.
const HISTORY: usize = 200;
const MAX_BODY: usize = 64 * 1024;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("build a tokio runtime")
}

fn publish(c: &mut Criterion) {
    let rt = runtime();
    let bus = Bus::in_memory(HISTORY, MAX_BODY);
    // A subscriber keeps the live channel busy, as in a real server.
    let _subscriber = rt.block_on(bus.subscribe_from(ResumeFrom::Start));
    let mut group = c.benchmark_group("bus/publish");
    for size in [64usize, 1024, 16 * 1024] {
        let body = "x".repeat(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.iter(|| rt.block_on(bus.publish(black_box(body.clone()))).expect("publish"));
        });
    }
    group.finish();
}

fn cursor_lookup(c: &mut Criterion) {
    let rt = runtime();
    let bus = Bus::in_memory(HISTORY, MAX_BODY);
    let ids: Vec<String> =
        (0..HISTORY).map(|i| rt.block_on(bus.publish(format!("message {i}"))).expect("publish").id.clone()).collect();
    let mut group = c.benchmark_group("bus/subscribe");
    // Near the head (the usual reconnect) and deep in the ring (a long absence).
    for (name, id) in [("newest", &ids[HISTORY - 1]), ("middle", &ids[HISTORY / 2]), ("oldest", &ids[0])] {
        group.bench_function(BenchmarkId::new("from-cursor", name), |b| {
            b.iter(|| rt.block_on(bus.subscribe_from(black_box(ResumeFrom::parse::<()>(Ok(Some(id)))))));
        });
    }
    group.bench_function("from-unknown-cursor", |b| {
        b.iter(|| rt.block_on(bus.subscribe_from(black_box(ResumeFrom::parse::<()>(Ok(Some("0123456789abcdef-1")))))));
    });
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("bus/fan-out");
    for subscribers in [1usize, 100, 1000, 10_000] {
        let bus = Bus::in_memory(HISTORY, MAX_BODY);
        let head = rt.block_on(bus.publish("start".into())).expect("publish").cursor;
        let mut subscriptions: Vec<_> =
            (0..subscribers).map(|_| rt.block_on(bus.subscribe_from(ResumeFrom::Cursor(head)))).collect();
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_function(BenchmarkId::from_parameter(subscribers), |b| {
            b.iter(|| {
                rt.block_on(bus.publish("hello".into())).expect("publish");
                for subscription in &mut subscriptions {
                    match subscription.try_next() {
                        Some(Delivery::Message(message)) => {
                            black_box(message);
                        }
                        other => panic!("every subscriber gets the message, got {other:?}"),
                    }
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, publish, cursor_lookup, fan_out);
criterion_main!(benches);
