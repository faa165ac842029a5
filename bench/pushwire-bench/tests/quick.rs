//! The load generator's quick matrix against a real pushwire child process: every
//! scenario completes and every message arrives exactly once, in order, on every
//! transport, over HTTP/1.1 and over TLS with HTTP/1.1 and HTTP/2 (WebTransport over
//! HTTP/3, and unordered, each message on its own stream). A check that the tool works
//! and that its loss accounting holds, never a timing assertion (the machine is shared
//! and noisy). With the `redis` feature, the
//! quick scale-out scenario too: publish on one instance, receive on another through a
//! real redis-server, against one in-memory instance.
//!
//! The server under test is the `pushwire` binary of the same target directory, which
//! `cargo test --workspace` builds (with `--all-features`, with Redis support), or the
//! one `PUSHWIRE_BIN` names.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The pushwire binary to measure.
fn pushwire_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PUSHWIRE_BIN") {
        return path.into();
    }
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_pushwire-bench"));
    let pushwire = bench.with_file_name(format!("pushwire{}", std::env::consts::EXE_SUFFIX));
    assert!(
        pushwire.is_file(),
        "no {}: build it first (cargo build --workspace) or set PUSHWIRE_BIN",
        pushwire.display()
    );
    pushwire
}

/// Runs pushwire-bench's quick matrix with `args` into a fresh directory; returns
/// the directory and its results.json.
fn quick_run(name: &str, args: &[&str]) -> (PathBuf, Value) {
    let out = std::env::temp_dir().join(format!("pushwire-bench-{name}-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_pushwire-bench"))
        .args(["--matrix", "quick", "--max-minutes", "5", "--pushwire-bin"])
        .arg(pushwire_bin())
        .args(args)
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run pushwire-bench");
    assert!(status.success(), "pushwire-bench failed: {status}");
    let json = std::fs::read_to_string(out.join("results.json")).expect("results.json is written");
    (out, serde_json::from_str(&json).expect("results.json is JSON"))
}

/// Asserts that a delivery outcome is complete and clean: every subscriber connected
/// and got every message once, in order, with no gap or error.
fn assert_delivered_exactly_once_in_order(outcome: &Value) {
    let what = format!("{} {} {} {}", outcome["server"], outcome["kind"], outcome["transport"], outcome["subscribers"]);
    for field in ["lost", "duplicated", "out_of_order", "gaps", "publish_errors", "connect_errors", "subscriber_errors"]
    {
        assert_eq!(outcome[field], 0, "{what}: {field} in {outcome:#}");
    }
    assert_eq!(outcome["connected"], outcome["subscribers"], "{what}");
    assert!(outcome["published"].as_u64().unwrap() > 0, "{what}: nothing published");
    assert_eq!(outcome["delivered"], outcome["expected"], "{what}");
    assert!(outcome["latency_us"]["samples"].as_u64().unwrap() > 0, "{what}: no latency samples");
}

#[test]
fn the_quick_matrix_delivers_every_message_once_and_in_order_on_every_transport() {
    let (out, run) = quick_run("quick", &[]);
    let outcomes = run["outcomes"].as_array().expect("outcomes");
    let mut transports_delivered = std::collections::BTreeSet::new();
    for outcome in outcomes {
        if outcome["kind"] != "idle" {
            assert_delivered_exactly_once_in_order(outcome);
            transports_delivered.insert(outcome["transport"].as_str().unwrap().to_owned());
        } else {
            let what = format!("idle {}", outcome["transport"]);
            for field in ["publish_errors", "connect_errors"] {
                assert_eq!(outcome[field], 0, "{what}: {field} in {outcome:#}");
            }
            assert_eq!(outcome["connected"], outcome["subscribers"], "{what}");
            assert!(outcome["memory"].is_object(), "{what}: the child's /proc was not read");
        }
    }
    assert_eq!(transports_delivered.into_iter().collect::<Vec<_>>(), ["long-poll", "sse", "websocket", "webtransport"]);
    for generated in ["tables.md", "fanout-latency.svg", "throughput.svg", "idle-memory.svg", "bytes-per-message.svg"] {
        assert!(out.join(generated).is_file(), "{generated} is written");
    }
    assert!(!out.join("scale-out.md").exists(), "no scale-out fragment without the scale-out scenario");
    std::fs::remove_dir_all(&out).expect("remove the output directory");
}

#[test]
fn the_quick_matrix_over_tls_and_http2_delivers_every_message_once_and_in_order_on_every_transport() {
    // pushwire serves HTTPS beside plain HTTP (`--tls-addr`, self-signed); fan-out,
    // idle and round trips over HTTP/1.1 with TLS, HTTP/2 with one subscriber per
    // connection, and HTTP/2 with 5 subscribers' streams sharing each connection.
    let https = ["h1-tls", "h2-tls", "h2-tls:5"];
    let (out, run) =
        quick_run("tls", &["--protocols", &https.join(","), "--kinds", "fan-out,idle,round-trip,round-trip-in-band"]);
    assert_eq!(run["http"], serde_json::json!(https), "the run records its HTTP settings");
    let mut measured = std::collections::BTreeSet::new();
    for outcome in run["outcomes"].as_array().expect("outcomes") {
        let http = outcome["http"].as_str().unwrap_or_else(|| panic!("no HTTP setting: {outcome:#}"));
        if outcome["kind"] == "idle" {
            assert_eq!(outcome["connect_errors"], 0, "idle over {http}: {outcome:#}");
            assert_eq!(outcome["connected"], outcome["subscribers"], "idle over {http}");
        } else {
            assert_delivered_exactly_once_in_order(outcome);
            // TLS records and HTTP/2 frames are counted, so a delivery costs more than its payload.
            assert!(outcome["bytes"]["down_per_delivery"].as_f64().unwrap() > 64.0, "{outcome:#}");
        }
        measured.insert((http.to_owned(), outcome["transport"].as_str().unwrap().to_owned()));
    }
    for http in https {
        for transport in ["long-poll", "sse", "websocket"] {
            assert!(measured.contains(&(http.to_owned(), transport.to_owned())), "{transport} over {http}");
        }
    }
    // HTTP/3 whatever the setting: measured once, with the first.
    let webtransport: Vec<_> = measured.iter().filter(|(_, transport)| transport == "webtransport").collect();
    assert_eq!(webtransport, [&(https[0].to_owned(), "webtransport".to_owned())]);
    let tables = std::fs::read_to_string(out.join("tables.md")).expect("tables.md is written");
    assert!(tables.contains("HTTP/2 + TLS, 5 per connection"), "{tables}");
    std::fs::remove_dir_all(&out).expect("remove the output directory");
}

#[test]
fn unordered_webtransport_delivers_every_message_once_and_reports_when_each_could_be_shown_in_order() {
    let (out, run) =
        quick_run("unordered", &["--transports", "webtransport-unordered", "--kinds", "fan-out,round-trip-in-band"]);
    let outcomes = run["outcomes"].as_array().expect("outcomes");
    assert!(!outcomes.is_empty());
    for outcome in outcomes {
        // Each message on its own stream may overtake another: order is not checked.
        for field in ["lost", "duplicated", "gaps", "publish_errors", "connect_errors", "subscriber_errors"] {
            assert_eq!(outcome[field], 0, "{field} in {outcome:#}");
        }
        assert_eq!(outcome["delivered"], outcome["expected"], "{outcome:#}");
        let (arrived, in_order) = (&outcome["latency_us"], &outcome["in_order_us"]);
        assert_eq!(in_order["samples"], arrived["samples"], "every message was shown in order: {outcome:#}");
        assert!(in_order["p50"].as_u64() >= arrived["p50"].as_u64(), "shown in order no earlier than arrived");
    }
    let tables = std::fs::read_to_string(out.join("tables.md")).expect("tables.md is written");
    assert!(tables.contains("| in order p50 / p99 |"), "{tables}");
    std::fs::remove_dir_all(&out).expect("remove the output directory");
}

#[cfg(feature = "redis")]
#[test]
fn the_quick_scale_out_scenario_delivers_every_message_once_and_in_order_across_instances() {
    let (out, run) = quick_run("scale-out", &["--scale-out-only"]);
    let outcomes = run["outcomes"].as_array().expect("outcomes");
    let mut measured = std::collections::BTreeSet::new();
    for outcome in outcomes {
        assert_eq!(outcome["kind"], "scale-out", "only the scale-out scenario ran: {outcome:#}");
        assert_delivered_exactly_once_in_order(outcome);
        measured.insert((outcome["server"].as_str().unwrap().to_owned(), outcome["transport"].as_str().unwrap()));
        assert!(outcome["server_cpu_ms"].is_number(), "CPU of every server-side process is read: {outcome:#}");
    }
    let expected: std::collections::BTreeSet<_> = ["pushwire-memory", "pushwire-redis"]
        .into_iter()
        .flat_map(|server| {
            ["long-poll", "sse", "websocket", "webtransport"].map(|transport| (server.to_owned(), transport))
        })
        .collect();
    assert_eq!(measured, expected, "both setups on every transport");
    let fragment = std::fs::read_to_string(out.join("scale-out.md")).expect("scale-out.md is written");
    assert!(fragment.contains("Scale-out: cross-instance through Redis vs in-memory"), "{fragment}");
    assert!(!out.join("tables.md").exists(), "no matrix tables without the matrix");
    std::fs::remove_dir_all(&out).expect("remove the output directory");
}

#[test]
fn the_quick_network_matrix_delivers_every_message_once_in_order_behind_every_kind_of_link() {
    // A link with no delay, one with a round trip, and one with limited bandwidth.
    let profiles = ["loopback", "rtt-20ms", "fast-3g"];
    let (out, run) = quick_run("network", &["--network", "quick", "--profiles", &profiles.join(",")]);
    let outcomes = run["outcomes"].as_array().expect("outcomes");
    let mut measured = std::collections::BTreeSet::new();
    for outcome in outcomes {
        assert_delivered_exactly_once_in_order(outcome);
        let link = outcome["link"].as_str().unwrap_or_else(|| panic!("no link profile: {outcome:#}"));
        measured.insert((link.to_owned(), outcome["kind"].as_str().unwrap().to_owned()));
    }
    for profile in profiles {
        for kind in ["fan-out", "burst", "round-trip", "round-trip-in-band", "resume", "cold-start"] {
            assert!(measured.contains(&(profile.to_owned(), kind.to_owned())), "{kind} over {profile}");
        }
    }
    // The rising rate runs only where the bandwidth is limited.
    assert!(measured.contains(&("fast-3g".to_owned(), "constrained".to_owned())));
    assert!(!measured.contains(&("rtt-20ms".to_owned(), "constrained".to_owned())));
    let report = std::fs::read_to_string(out.join("network.md")).expect("network.md is written");
    assert!(report.contains("Reconnect and resume"), "{report}");
    assert!(out.join("network-fanout.svg").is_file() && out.join("network-burst.svg").is_file());
    assert!(!out.join("tables.md").exists(), "a network run writes no loopback tables");
    std::fs::remove_dir_all(&out).expect("remove the output directory");
}

#[test]
fn the_scale_matrix_is_not_a_network_matrix() {
    let output = Command::new(env!("CARGO_BIN_EXE_pushwire-bench"))
        .args(["--network", "scale"])
        .output()
        .expect("run pushwire-bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--network is quick or standard; the scale curve is --matrix scale"), "{stderr}");
}
