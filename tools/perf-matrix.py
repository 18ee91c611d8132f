#!/usr/bin/env python3
"""Run cmap-perf workloads several times (separate processes, one at a time)
and print the median, min and max of each figure: the numbers in
docs/PERFORMANCE.md come from here.

usage: tools/perf-matrix.py [--reps 3] [--loads 10000000] [--perf PATH]
"""
import argparse, json, statistics, subprocess, sys

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--loads", type=int, default=10_000_000)
    ap.add_argument("--perf", default="build/release/cmap-perf")
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    n = a.loads
    work = {
        "get-1t": ["--gets", str(n), "--threads", "1"],
        "get-2t": ["--gets", str(n), "--threads", "2"],
        "get-batch32-1t": ["--gets", str(n), "--threads", "1", "--batch", "32"],
        "get-batch32-2t": ["--gets", str(n), "--threads", "2", "--batch", "32"],
        "mix90-2t": ["--gets", str(n * 9 // 10), "--sets", str(n // 20),
                     "--rems", str(n // 20), "--threads", "2"],
        "mix50-2t": ["--gets", str(n // 2), "--sets", str(n // 4),
                     "--rems", str(n // 4), "--threads", "2"],
        "contention-2t": ["--sets", str(n // 10), "--threads", "2", "--contention"],
    }
    for name, args in work.items():
        if a.only and name not in a.only.split(","):
            continue
        rows = []
        for _ in range(a.reps):
            cmd = [a.perf, "--loads", str(n), "--hasher", "identity", "--json"] + args
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
        def stat(f):
            v = [f(r) for r in rows]
            return "%.2f (%.2f-%.2f)" % (statistics.median(v), min(v), max(v))
        print("%-16s load %s Mops/s | run %s Mops/s | per thread %s | %s B/entry after load"
              % (name, stat(lambda r: r["load"]["mops"]), stat(lambda r: r["run"]["mops"]),
                 stat(lambda r: r["run"]["per_thread_mops"]),
                 stat(lambda r: r["load_bytes_per_entry"])))
        sys.stdout.flush()

if __name__ == "__main__":
    main()
