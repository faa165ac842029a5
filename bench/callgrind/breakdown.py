"""Where the instructions of one long-poll exchange go, by the inclusive costs of a few
functions (bench/callgrind/run --breakdown). Takes the callgrind outputs of the run
without messages and the run with them, and the number of exchanges, and prints per
exchange the difference of the two runs, so start-up does not count.

    python3 bench/callgrind/breakdown.py BASE.out LOADED.out EXCHANGES

Inclusive costs nest: a row's share contains the rows indented under it. The
publishes of the run (one per 20 exchanges) are in the total and in axum's share.
"""
import re
import subprocess
import sys

# (indent, label, functions whose inclusive costs are added, functions subtracted)
ONESHOT = "<tower::util::oneshot::Oneshot<S,Req> as core::future::future::Future>::poll"
POLL = "<F as axum::handler::Handler<(M,T1,T2,T3,T4),S>>::call::{{closure}}"
PUBLISH = "<F as axum::handler::Handler<(M,T1,T2),S>>::call::{{closure}}"
CONNECTION = "<tokio_util::task::task_tracker::TrackedFuture<F> as core::future::future::Future>::poll"
READ_HEAD = "hyper::proto::h1::conn::Conn<I,B,T>::poll_read_head"
WRITE = ["hyper::proto::h1::conn::Conn<I,B,T>::write_head", "hyper::proto::h1::io::Buffered<T,B>::poll_flush"]
FORM = [
    "<http_body_util::combinators::collect::Collect<T> as core::future::future::Future>::poll",
    "http_body_util::collected::Collected<B>::to_bytes",
    "core::ptr::drop_in_place<http_body_util::combinators::collect::Collect<http_body_util::limited::Limited<axum_core::body::Body>>>",
    "pushwire::transport::form::Form::parse",
    "pushwire::transport::form::Form::check_xsrf",
]
HANDLER_PARTS = [
    "pushwire::bus::Bus::subscribe_locally",
    "pushwire::transport::long_poll::Answer::add",
    "pushwire::transport::json_response",
    "core::ptr::drop_in_place<http::request::Parts>",
]
ROWS = [
    (0, "the connection's task (hyper's connection future)", [CONNECTION], []),
    (1, "hyper: read and parse the request head", [READ_HEAD], []),
    (1, "hyper: encode and write the response", WRITE, []),
    (1, "axum: routing and the layers around the handlers", [ONESHOT], [POLL, PUBLISH]),
    (1, "the publish handler (one publish per 20 exchanges)", [PUBLISH], []),
    (1, "the long-poll handler, with its extractors", [POLL], []),
    (2, "the form: read the body, parse it, check the XSRF token", FORM, []),
    (2, "subscribe to the bus (cursor, history)", HANDLER_PARTS[:1], []),
    (2, "add the message to the answer (and its latency metric)", HANDLER_PARTS[1:2], []),
    (2, "the answer as a response", HANDLER_PARTS[2:3], []),
    (2, "drop the request head (its HeaderMap)", HANDLER_PARTS[3:], []),
    (2, "the rest: wait (select, timer, connection token), subscriber slot", [POLL], FORM + HANDLER_PARTS),
    (1, "the rest of hyper's dispatch (state machine, body channel, keep-alive read)", [CONNECTION],
     [READ_HEAD, ONESHOT] + WRITE),
    (0, "outside it: tokio's scheduler, I/O readiness, timers, other tasks", ["PROGRAM TOTALS"], [CONNECTION]),
]


def inclusive(path):
    """Inclusive instruction count of every function in a callgrind output."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                          capture_output=True, text=True, check=True).stdout
    costs = {}
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(?:\S*?:)?(.+?)(?: \[.*\])?$", line)
        if match:
            name = match.group(2).strip()
            costs.setdefault("PROGRAM TOTALS" if name == "PROGRAM TOTALS" else name,
                             int(match.group(1).replace(",", "")))
    return costs


def main(base_path, loaded_path, exchanges):
    base, loaded = inclusive(base_path), inclusive(loaded_path)
    missing = sorted({n for _, _, added, subtracted in ROWS for n in added + subtracted} - loaded.keys())
    for name in missing:
        # A function renamed by a new version of hyper, axum or tower, or inlined away.
        print(f"warning: not in the profile, counted as 0: {name}", file=sys.stderr)

    def per_exchange(names):
        return sum(loaded.get(n, 0) - base.get(n, 0) for n in names) / exchanges

    total = per_exchange(["PROGRAM TOTALS"])
    print(f"{'':80} {total:8,.0f} instructions per exchange (100 %)")
    for indent, label, added, subtracted in ROWS:
        value = per_exchange(added) - per_exchange(subtracted)
        print(f"{'  ' * indent}{label:{80 - 2 * indent}} {value:8,.0f}  {100 * value / total:5.1f} %")


main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
