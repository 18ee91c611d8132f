#!/usr/bin/env python3
"""Side-by-side benchmark of cmap and its peers: every map compiled into
cmap-perf (see `cmap-perf --list`) runs the same workloads (load; get; set;
90/5/5; 50/25/25; contention; and, where the map has the operation,
counter, counter-zipf, insert, iterate and iterate-w) at each thread count
and load size, each configuration in --reps separate processes, one at a
time.  The classic workloads run in one process per (map, N, rep), the
read-modify-write and iteration ones in a second (its own load), so that
they do not change what the classic ones see.  Writes results.csv and
results.json (medians with min and max) to --out, prints a table, and with
--charts renders PNG charts with gnuplot.  iterate and iterate-w are in
M entries/s; iterate-w-writer is the concurrent writer's Mops/s during
iterate-w.

usage: tools/compare.py [--reps 3] [--loads 1000000,10000000]
                        [--threads 1,2 | --max-threads N]
                        [--maps cmap,tbb,...] [--workloads get,counter,...]
                        [--out docs/perf] [--charts]
"""
import argparse, csv, json, os, statistics, subprocess, sys

CLASSIC = ["get", "set", "mix90", "mix50", "contention"]
# The optional operations (bench/maps.h): a map without one skips it.
RMW = ["counter", "counter-zipf", "insert", "iterate", "iterate-w"]
WORKLOADS = CLASSIC + RMW
TITLES = {"load": "load (1 thread inserting)", "get": "get",
          "set": "set (insert or replace)", "mix90": "90% get, 5% set, 5% remove",
          "mix50": "50% get, 25% set, 25% remove",
          "contention": "contention (all threads set one key)",
          "counter": "counter: atomic increments, uniform keys (upsert)",
          "counter-zipf": "counter: atomic increments, Zipf 0.99 keys (upsert)",
          "insert": "insert if absent (half the keys present)",
          "iterate": "iterate: full walks (threads each walk the map)",
          "iterate-w": "iterate while 1 more thread inserts and removes",
          "iterate-w-writer": "iterate-w: the concurrent writer (inserts + removes)"}
UNITS = {"iterate": "M entries/s", "iterate-w": "M entries/s"}


def run(perf, m, n, threads, ops, workloads):
    # One process loads once, then runs every workload at every thread
    # count in turn on that map (the same sequence for every map).
    cmd = [perf, "--map", m, "--loads", str(n), "--ops", str(ops), "--threads",
           ",".join(str(t) for t in threads), "--workloads", ",".join(workloads),
           "--json"]
    if m == "cmap":
        cmd += ["--hasher", "mix"]  # the peers' hash, for a like-for-like run
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("FAILED (correctness guard or error): %s\n%s%s"
                 % (" ".join(cmd), p.stdout[-2000:], p.stderr[-2000:]))
    return json.loads(p.stdout.strip().splitlines()[-1])


def summary(v):
    return {"median": statistics.median(v), "min": min(v), "max": max(v)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--perf", default="build/release/cmap-perf")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--loads", default="1000000,10000000")
    ap.add_argument("--threads", default="",
                    help="thread counts, e.g. 1,2,4 (default 1..--max-threads)")
    ap.add_argument("--max-threads", type=int, default=os.cpu_count() or 2,
                    help="with no --threads: 1, 2, ... up to this (default: CPUs)")
    ap.add_argument("--ops", type=int, default=0,
                    help="ops per thread per workload (default: N/10, at least 100000)")
    ap.add_argument("--maps", default="")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="a subset of " + ",".join(WORKLOADS))
    ap.add_argument("--out", default="docs/perf")
    ap.add_argument("--charts", action="store_true")
    a = ap.parse_args()
    listed = subprocess.run([a.perf, "--list"], capture_output=True, text=True,
                            check=True).stdout.split("\n")
    maps = [l.split()[0] for l in listed if l.strip()]
    if a.maps:
        maps = [m for m in a.maps.split(",") if m in maps]
    loads = [int(x) for x in a.loads.split(",")]
    wanted = a.workloads.split(",")
    bad = [w for w in wanted if w not in WORKLOADS]
    if bad:
        sys.exit("unknown workloads: " + ",".join(bad))
    groups = [g for g in ([w for w in CLASSIC if w in wanted],
                          [w for w in RMW if w in wanted]) if g]
    shown = [w for w in WORKLOADS if w in wanted]
    threads = ([int(x) for x in a.threads.split(",")] if a.threads
               else list(range(1, a.max_threads + 1)))
    total = len(loads) * len(maps) * a.reps
    tty = sys.stderr.isatty()
    raw = {}  # (map, workload, n, t) -> [mops]; (map, 'bpe', n) -> [bytes]
    k = 0
    for n in loads:
        ops = a.ops or max(100000, n // 10)
        for m in maps:
            for _ in range(a.reps):
                k += 1
                if tty:
                    sys.stderr.write("\r[%d/%d] %-10s N=%-9d " % (k, total, m, n))
                    sys.stderr.flush()
                for gi, g in enumerate(groups):
                    r = run(a.perf, m, n, threads, ops, g)
                    if gi == 0:  # the load and memory of the first process
                        raw.setdefault((m, "load", n, 1), []).append(r["load"]["mops"])
                        raw.setdefault((m, "bpe", n, 0), []).append(
                            r["load_bytes_per_entry"])
                        raw.setdefault((m, "rss", n, 0), []).append(
                            r["rss_bytes"] / 1048576.0)
                    for ph in r["phases"]:
                        raw.setdefault((m, ph["name"], n, ph["threads"]),
                                       []).append(ph["mops"])
                        if ph["name"] == "iterate-w":
                            raw.setdefault((m, "iterate-w-writer", n, ph["threads"]),
                                           []).append(ph["writer_mops"])
    if tty:
        sys.stderr.write("\n")
    rows = []
    for (m, w, n, t), v in sorted(raw.items()):
        if w in ("bpe", "rss"):
            continue
        s = summary(v)
        # Memory is the process's: peak RSS after the load (per distinct
        # key) and at the end of all phases (the map's peak in MiB).
        bpe = statistics.median(raw[(m, "bpe", n, 0)])
        rss = statistics.median(raw[(m, "rss", n, 0)])
        rows.append({"map": m, "workload": w, "n": n, "threads": t,
                     "mops": s["median"], "mops_min": s["min"], "mops_max": s["max"],
                     "runs": len(v), "peak_rss_mib": round(rss, 1),
                     "bytes_per_entry": bpe})
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        wr.writeheader()
        wr.writerows(rows)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"maps": maps, "loads": loads, "threads": threads, "reps": a.reps,
                   "hash": "murmur3 fmix64 for every map", "rows": rows}, f, indent=1)
    print("%-10s %-16s %9s %3s %22s %9s %9s" % ("map", "workload", "N", "T",
                                                "Mops/s median (min-max)",
                                                "peak MiB", "B/entry"))
    for r in rows:
        print("%-10s %-16s %9d %3d %8.2f (%5.2f-%5.2f) %9.1f %9.1f" % (
            r["map"], r["workload"], r["n"], r["threads"], r["mops"],
            r["mops_min"], r["mops_max"], r["peak_rss_mib"], r["bytes_per_entry"]))
    if a.charts:
        extra = ["iterate-w-writer"] if "iterate-w" in shown else []
        charts(rows, maps, loads, threads, a.out, shown + extra)


def charts(rows, maps, loads, threads, out, workloads):
    """One PNG per workload and N (Mops/s against threads, a line per map,
    min-max bars) and one bar chart of bytes per entry per N."""
    for n in loads:
        for w in ["load"] + workloads:
            # Only the maps that ran this workload (the others lack the
            # operation).
            have = [m for m in maps
                    if any(r["map"] == m and r["workload"] == w and r["n"] == n
                           for r in rows)]
            if not have:
                continue
            dat = os.path.join(out, "%s-%d.dat" % (w, n))
            with open(dat, "w") as f:
                for m in have:
                    f.write('"%s"\n' % m)
                    for r in rows:
                        if r["map"] == m and r["workload"] == w and r["n"] == n:
                            f.write("%d %f %f %f\n" % (r["threads"], r["mops"],
                                                       r["mops_min"], r["mops_max"]))
                    f.write("\n\n")
            png = os.path.join(out, "%s-%d.png" % (w, n))
            plots = ", ".join(
                "'%s' index %d using 1:2:3:4 with yerrorlines title '%s'" % (dat, i, m)
                for i, m in enumerate(have))
            script = """set terminal pngcairo size 800,500 noenhanced
set output '%s'
set title '%s, N = %d loads (u32 -> u64)'
set xlabel 'threads'
set ylabel '%s (median, min-max)'
set xtics 1
set xrange [0.5:%d.5]
set yrange [0:*]
set key outside right
set grid
plot %s
""" % (png, TITLES[w], n, UNITS.get(w, "Mops/s"), max(threads), plots)
            subprocess.run(["gnuplot"], input=script, text=True, check=True)
            os.remove(dat)
        dat = os.path.join(out, "bytes-%d.dat" % n)
        with open(dat, "w") as f:
            for m in maps:
                v = [r["bytes_per_entry"] for r in rows if r["map"] == m and r["n"] == n]
                if v:
                    f.write('"%s" %f\n' % (m, v[0]))
        script = """set terminal pngcairo size 800,450 noenhanced
set output '%s'
set title 'peak RSS per entry after loading N = %d keys (lower is better)'
set ylabel 'bytes per entry'
set style fill solid 0.6
set boxwidth 0.6
set yrange [0:*]
set grid ytics
unset key
plot '%s' using 0:2:xtic(1) with boxes, '' using 0:2:(sprintf('%%.1f', $2)) with labels offset 0,0.8
""" % (os.path.join(out, "bytes-per-entry-%d.png" % n), n, dat)
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
        os.remove(dat)


if __name__ == "__main__":
    main()
