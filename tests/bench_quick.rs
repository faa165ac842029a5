//! The load generator's quick matrix against a real pushwire child process: every
//! scenario completes and every message arrives exactly once, in order, on every
//! transport. A check that the tool works and that its loss accounting holds, never
//! a timing assertion (the machine is shared and noisy).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[test]
fn the_quick_matrix_delivers_every_message_once_and_in_order_on_every_transport() {
    let out = std::env::temp_dir().join(format!("pushwire-bench-quick-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_pushwire-bench"))
        .args(["--matrix", "quick", "--max-minutes", "5", "--pushwire-bin", env!("CARGO_BIN_EXE_pushwire")])
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run pushwire-bench");
    assert!(status.success(), "pushwire-bench failed: {status}");

    let json = std::fs::read_to_string(out.join("results.json")).expect("results.json is written");
    let run: Value = serde_json::from_str(&json).expect("results.json is JSON");
    let outcomes = run["outcomes"].as_array().expect("outcomes");
    let mut transports_delivered = std::collections::BTreeSet::new();
    for outcome in outcomes {
        let what = format!("{} {} {}", outcome["kind"], outcome["transport"], outcome["subscribers"]);
        for field in ["lost", "duplicated", "out_of_order", "gaps", "publish_errors", "connect_errors"] {
            assert_eq!(outcome[field], 0, "{what}: {field} in {outcome:#}");
        }
        assert_eq!(outcome["connected"], outcome["subscribers"], "{what}");
        if outcome["kind"] != "idle" {
            assert!(outcome["published"].as_u64().unwrap() > 0, "{what}: nothing published");
            assert_eq!(outcome["delivered"], outcome["expected"], "{what}");
            assert!(outcome["latency_us"]["samples"].as_u64().unwrap() > 0, "{what}: no latency samples");
            transports_delivered.insert(outcome["transport"].as_str().unwrap().to_owned());
        } else {
            assert!(outcome["memory"].is_object(), "{what}: the child's /proc was not read");
        }
    }
    assert_eq!(transports_delivered.into_iter().collect::<Vec<_>>(), ["long-poll", "sse", "websocket"]);
    for generated in ["tables.md", "fanout-latency.svg", "throughput.svg", "idle-memory.svg", "bytes-per-message.svg"] {
        assert!(PathBuf::from(&out).join(generated).is_file(), "{generated} is written");
    }
    std::fs::remove_dir_all(&out).expect("remove the output directory");
}
