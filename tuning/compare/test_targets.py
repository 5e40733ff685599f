"""Unit tests of targets.py (run by tests/tests/tuning_scripts.rs, or
`python3 -m unittest discover -s tuning/compare -p 'test_*.py'`)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import targets  # noqa: E402


class Verdicts(unittest.TestCase):
    def test_the_ratio_of_medians_decides_and_the_rounds_qualify(self):
        self.assertEqual(targets.verdict(0.80, [0.78, 0.80, 0.84], 0.85), "met")
        self.assertEqual(targets.verdict(0.84, [0.80, 0.84, 0.90], 0.85), "met, not in every round")
        self.assertEqual(targets.verdict(0.86, [0.80, 0.86, 0.90], 0.85), "not met, met in some rounds")
        self.assertEqual(targets.verdict(0.90, [0.86, 0.90, 0.95], 0.85), "not met")
        self.assertEqual(targets.verdict(0.85, [0.85], 0.85), "met")
        self.assertEqual(targets.verdict(None, [], 0.85), "no data")

    def test_only_measured_targets_are_judged_with_their_servers_keys(self):
        summary = {
            # nginx's ratios have no suffix (the key older runs' JSON has).
            "keepalive": {"wrk": {"cpu_ratio_vs_peer-tokio": 0.86,
                                  "cpu_ratio_vs_peer-tokio_rounds": [0.93, 0.76, 0.80],
                                  "cpu_ratio": 0.60, "cpu_ratio_rounds": [0.61, 0.60, 0.59]}},
            # A client the targets do not name: not judged.
            "full": {"bench-client": {"cpu_ratio_vs_peer-tokio": 0.5}},
        }
        rows = {(r["workload"], r["metric"], r["other"]): r for r in targets.judge(summary)}
        self.assertEqual(set(rows), {("keepalive", "cpu_ratio", "peer-tokio"),
                                     ("keepalive", "cpu_ratio", "nginx")})
        tokio = rows[("keepalive", "cpu_ratio", "peer-tokio")]
        self.assertEqual((tokio["threshold"], tokio["verdict"]), (0.85, "not met, met in some rounds"))
        self.assertEqual(rows[("keepalive", "cpu_ratio", "nginx")]["verdict"], "met")


if __name__ == "__main__":
    unittest.main()
