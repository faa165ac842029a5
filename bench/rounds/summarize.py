"""Figures of repeated runs, side by side: one line per run, then per scenario the
medians of each variant, and for each pair of variants in how many rounds the first
one's figure was at or below the other's. Fan-out: p99 latency, and server CPU per delivery
with its user-space part; idle: memory per connection.

    python3 bench/rounds/summarize.py [LABEL:]results.json ...

A variant is a server of the runs (pushwire, nchan); a LABEL before a file names that
file's pushwire instead (a build, a setting). Files are rounds in the order given.
Used by bench/rounds/run and the experiments bench/experiments/event-interval/run,
bench/experiments/thread-per-core/run and bench/experiments/bare-long-poll/run.
"""
import json
import statistics
import sys

# What is compared in each kind of scenario: (name, unit, value of an outcome).
FIGURES = {
    "fan-out": ("p99", "ms", lambda o: o["latency_us"]["p99"] / 1000),
    "idle": ("memory per connection", "KiB", lambda o: o["memory"]["rss_per_connection_bytes"] / 1024),
}

figure, cpu, user, lost = {}, {}, {}, {}
variants = []
for argument in sys.argv[1:]:
    label, _, path = argument.rpartition(":")
    for o in json.load(open(path))["outcomes"]:
        if o["kind"] not in FIGURES:
            continue
        name, unit, value = FIGURES[o["kind"]]
        variant = label if label and o["server"] == "pushwire" else o["server"]
        if variant not in variants:
            variants.append(variant)
        key = (o["kind"], o["transport"], o["subscribers"], variant)
        figure.setdefault(key, []).append(value(o))
        cpu.setdefault(key, []).append((o["server_cpu_us_per_1000_deliveries"] or 0) / 1000)
        user.setdefault(key, []).append((o.get("server_cpu_user_us_per_1000_deliveries") or 0) / 1000)
        lost[key] = lost.get(key, 0) + o["lost"]
        extra = (f", CPU {cpu[key][-1]:5.2f} µs per delivery (user {user[key][-1]:4.2f}), lost {o['lost']}"
                 if o["kind"] == "fan-out" else "")
        print(f"round {len(figure[key])}, {variant:>8}: {o['kind']:<7} {o['transport']:<9} {o['subscribers']:>5} "
              f"{name} {figure[key][-1]:7.2f} {unit}{extra}")

print()
for kind, transport, subscribers in sorted({key[:3] for key in figure}):
    name, unit, _ = FIGURES[kind]
    for variant in variants:
        key = (kind, transport, subscribers, variant)
        if key in figure:
            extra = (f", CPU {statistics.median(cpu[key]):5.2f} µs per delivery "
                     f"(user {statistics.median(user[key]):4.2f}), lost {lost[key]} in all"
                     if kind == "fan-out" else "")
            print(f"median of {len(figure[key])} rounds, {variant:>8}: {kind:<7} {transport:<9} {subscribers:>5} "
                  f"{name} {statistics.median(figure[key]):7.2f} {unit}{extra}")
    for i, one in enumerate(variants):
        for other in variants[i + 1:]:
            first, second = (figure.get((kind, transport, subscribers, v), []) for v in (one, other))
            if first and second:
                at_or_below = sum(a <= b for a, b in zip(first, second))
                rounds = min(len(first), len(second))
                print(f"{kind:<7} {transport:<9} {subscribers:>5}: {one}'s {name} at or below {other}'s "
                      f"in {at_or_below} of {rounds} rounds")
                if kind == "fan-out":
                    for label, values in (("CPU per delivery", cpu), ("user-space CPU per delivery", user)):
                        a, b = (values[(kind, transport, subscribers, v)] for v in (one, other))
                        print(f"{kind:<7} {transport:<9} {subscribers:>5}: {one}'s {label} at or below {other}'s "
                              f"in {sum(x <= y for x, y in zip(a, b))} of {rounds} rounds")
