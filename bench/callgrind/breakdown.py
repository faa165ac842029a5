"""Where the instructions of one long-poll exchange go, by the inclusive costs of a few
functions (bench/callgrind/run --breakdown). Takes the callgrind outputs of the run
without messages and the run with them, and the number of exchanges, and prints per
exchange the difference of the two runs, so start-up does not count.

    python3 bench/callgrind/breakdown.py BASE.out LOADED.out EXCHANGES

Inclusive costs nest: a row's share contains the rows indented under it. The
publishes of the run (one per 20 exchanges) are in the total and in the handlers'
share. Names are those of a release build; one renamed by a new version of a
dependency, or inlined away, is reported and counted as 0.
"""
import re
import subprocess
import sys

# (indent, label, functions whose inclusive costs are added, functions subtracted)
CONNECTION = "<tokio_util::task::task_tracker::TrackedFuture<F> as core::future::future::Future>::poll"
READ_HEAD = "hyper::proto::h1::conn::Conn<I,B,T>::poll_read_head"
WRITE = ["hyper::proto::h1::conn::Conn<I,B,T>::write_head", "hyper::proto::h1::io::Buffered<T,B>::poll_flush"]
# The handlers' futures, as `App::handle` maps them (the poll, and the publish).
HANDLERS = "<futures_util::future::future::map::Map<Fut,F> as core::future::future::Future>::poll'2"
DISPATCH = ["pushwire::transport::App::handle", "<pushwire::server::WokenOnly<F> as core::future::future::Future>::poll"]
FORM = ["pushwire::transport::form::Form::read::{{closure}}"]
CURSOR = ["<pushwire::bus::cursor::Cursor as core::str::traits::FromStr>::from_str"]
SUBSCRIBE = ["pushwire::bus::Bus::subscribe_from::{{closure}}"]
PUBLISH = ["pushwire::bus::Bus::append_here"]
ANSWER = [
    "pushwire::transport::long_poll::Answer::add",
    "pushwire::transport::long_poll::Answer::into_body",
    "pushwire::transport::json_response",
]
ROWS = [
    (0, "the connection's task (hyper's connection future)", [CONNECTION], []),
    (1, "hyper: read and parse the request head", [READ_HEAD], []),
    (1, "hyper: encode and write the response", WRITE, []),
    (1, "pushwire: the match in front of the router, the connection's end", DISPATCH, []),
    (1, "the handlers: 20 polls and a publish", [HANDLERS], []),
    (2, "the form: read the body, split it, check the XSRF token", FORM, []),
    (2, "the cursor", CURSOR, []),
    (2, "subscribe to the bus (history, live feed)", SUBSCRIBE, []),
    (2, "the publish's append to the bus", PUBLISH, []),
    (2, "the answer: its messages, latency metric, body and head", ANSWER, []),
    (2, "the rest: wait (select, hold sweep), subscriber slot, metrics", [HANDLERS],
     FORM + CURSOR + SUBSCRIBE + PUBLISH + ANSWER),
    (1, "the rest of hyper's dispatch (state machine, body channel, keep-alive read)", [CONNECTION],
     [READ_HEAD, HANDLERS] + WRITE + DISPATCH),
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
