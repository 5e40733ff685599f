"""Issue 18's targets, judged on a compare.py summary.

Each target is a ratio of uringtls's figure to another server's (CPU per
operation, user time per request, open-loop p99 / p99.9, idle RSS per
connection) that must not exceed a threshold. The issue judges it on the
ratio of medians of one interleaved run; on a noisy machine that ratio can
land on either side of the threshold from run to run, so each verdict also
says whether the run's rounds agree with it:

- `met`: the ratio of medians is at or under the threshold, and so is
  every round's ratio;
- `met, not in every round`: under it, but some round's ratio is over;
- `not met, met in some rounds`: over it, but some round's ratio is under;
- `not met`: over it in every round too.

A target whose rounds disagree is not settled by the run: more rounds, or a
quieter machine, are what would settle it. Used by compare.py (printed
after its table and written to its JSON as `targets`). On a saved run:

    python3 tuning/compare/targets.py compare.json
"""

import json
import sys

# (workload, client, metric, other server, threshold). `metric` names the
# summary's ratio key before summary_key() adds the server: `cpu_ratio`,
# `user_ratio`, `p99_us_ratio`, `p99_9_us_ratio`, `rss_ratio`.
TARGETS = (
    ("keepalive", "wrk", "cpu_ratio", "peer-tokio", 0.85),
    ("keepalive", "wrk", "user_ratio", "peer-tokio", 0.70),
    ("full", "h2load", "cpu_ratio", "peer-tokio", 0.90),
    ("resumed", "wrk", "cpu_ratio", "peer-tokio", 0.65),
    ("bulk", "wrk", "cpu_ratio", "peer-tokio", 0.70),
    ("openloop", "oha", "p99_us_ratio", "peer-tokio", 0.80),
    ("openloop", "oha", "p99_9_us_ratio", "peer-tokio", 0.80),
    ("idle", "python-ssl", "rss_ratio", "peer-tokio", 0.40),
    ("keepalive", "wrk", "cpu_ratio", "nginx", 0.65),
    ("full", "h2load", "cpu_ratio", "nginx", 0.40),
    ("resumed", "wrk", "cpu_ratio", "nginx", 0.35),
    ("bulk", "wrk", "cpu_ratio", "nginx", 0.60),
    ("openloop", "oha", "p99_us_ratio", "nginx", 0.50),
    ("idle", "python-ssl", "rss_ratio", "nginx", 0.40),
)

LABELS = {
    "cpu_ratio": "CPU per operation",
    "user_ratio": "user time per operation",
    "p99_us_ratio": "p99",
    "p99_9_us_ratio": "p99.9",
    "rss_ratio": "RSS per connection",
}


def summary_key(metric, other):
    """The summary key of uringtls's ratio `metric` against server
    `other` (compare.py's too): `cpu_ratio` against nginx (the key earlier
    runs' JSON has), `cpu_ratio_vs_peer-tokio` against a peer."""
    return metric if other == "nginx" else f"{metric}_vs_{other}"


def verdict(value, rounds, threshold):
    """The verdict for a ratio of medians `value` and the run's per-round
    ratios `rounds` (possibly empty) against `threshold`."""
    if value is None:
        return "no data"
    met = value <= threshold
    if met:
        return "met" if all(r <= threshold for r in rounds) else "met, not in every round"
    return "not met" if all(r > threshold for r in rounds) else "not met, met in some rounds"


def judge(summary):
    """One row per target the summary has data for: workload, client,
    metric, other server, threshold, the ratio of medians, the per-round
    ratios and the verdict. Targets whose workload, client or server the
    run did not measure are left out."""
    rows = []
    for wl, client, metric, other, threshold in TARGETS:
        row = summary.get(wl, {}).get(client)
        k = summary_key(metric, other)
        if row is None or k not in row:
            continue
        value, rounds = row[k], row.get(f"{k}_rounds") or []
        rows.append({"workload": wl, "client": client, "metric": metric, "other": other,
                     "threshold": threshold, "ratio": value, "rounds": rounds,
                     "verdict": verdict(value, rounds, threshold)})
    return rows


def print_targets(rows):
    if not rows:
        return
    print()
    print("issue 18's targets (uringtls / other server; ratio of medians, then each round's):")
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        per = "/".join(f"{x:.2f}" for x in r["rounds"])
        what = f"{r['workload']} {LABELS.get(r['metric'], r['metric'])} / {r['other']}"
        print(f"  {what:48} {ratio:>5} <= {r['threshold']:.2f}  {r['verdict']:28} {per}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: targets.py COMPARE_JSON (written by compare.py --json)")
    with open(sys.argv[1]) as f:
        print_targets(judge(json.load(f)["summary"]))
