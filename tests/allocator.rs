//! The binary's allocator: jemalloc with its background thread, which hands freed
//! pages back to the kernel while the server is idle (without it, memory taken by a
//! burst of connections stayed taken; `docs/performance.md`, "Churn without leaks").
//! jemalloc prints its options at exit when asked through its environment variable.

use std::process::Command;

#[test]
fn the_binary_runs_jemalloc_with_its_background_thread() {
    let output = Command::new(env!("CARGO_BIN_EXE_pushwire"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("run the pushwire binary");
    assert!(output.status.success());
    let stats = String::from_utf8_lossy(&output.stderr);
    assert!(stats.contains("opt.background_thread: true"), "jemalloc's options:\n{stats}");
}
