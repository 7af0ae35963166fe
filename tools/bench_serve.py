#!/usr/bin/env python3
"""Load benchmark of `bertrt serve` (a committed compare script, not a timed test).

    python3 tools/bench_serve.py [--binary target/release/bertrt] [--seconds 10]
                                 [--concurrency 1,8,64] [--lengths 16,128]

Serves the default model (all-MiniLM-L6-v2) on the CPU on 127.0.0.1 and loads POST /embed
with wrk (Debian's package) at each concurrency, one input of exactly LEN tokens per
request ([CLS] and [SEP] included). For each point it prints requests/s, tokens/s, p50 and
p99 latency, and the server's tokens/s as a ratio to the engine's own forward throughput
(`bertrt bench`, BertModel forwards of batch = concurrency x LEN, measured just before
and just after each load on the same machine, the mean of the two). The server and wrk share the machine's cores, so the ratio is
a lower bound of what a separate load generator would see. Prints a markdown table, then
one JSON object per point.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time


def wrk_run(url: str, body: str, concurrency: int, seconds: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\n')
        f.write('wrk.headers["Content-Type"] = "application/json"\n')
        f.write(f"wrk.body = {json.dumps(body)}\n")
        script = f.name
    threads = max(1, min(concurrency, 2))
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s", "--latency",
         "--timeout", "30s", "-s", script, url],
        capture_output=True, text=True, check=True).stdout
    os.unlink(script)

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise SystemExit(f"no {label}% latency in wrk's output:\n{out}")
        scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
        return float(m.group(1)) * scale

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "p50_ms": ms("50"), "p99_ms": ms("99"),
            "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(0) if errors else ""}


def engine_tokens_per_s(binary: str, batch: int, length: int) -> float:
    out = subprocess.run([binary, "bench", "--shapes", f"{batch}x{length}", "--iters", "10", "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])["tokens_per_s"]


def text_of(binary: str, base: str, length: int) -> str:
    """A text that tokenizes to exactly `length` tokens with [CLS] and [SEP]."""
    import urllib.request
    words = ["hello"] * (length - 2)
    text = " ".join(words)
    req = urllib.request.Request(f"{base}/tokenize", data=json.dumps({"inputs": text}).encode(),
                                 headers={"Content-Type": "application/json"})
    n = len(json.load(urllib.request.urlopen(req))[0])
    if n != length:
        raise SystemExit(f"the {length}-token text has {n} tokens")
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/bertrt")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument("--lengths", default="16,128")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install wrk)")
    server = subprocess.Popen([args.binary, "serve", "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise SystemExit(f"server did not start: {line!r}")
        base = line.removeprefix("listening on ")
        rows = []
        for length in [int(x) for x in args.lengths.split(",")]:
            body = json.dumps({"inputs": text_of(args.binary, base, length)})
            for c in [int(x) for x in args.concurrency.split(",")]:
                wrk_run(f"{base}/embed", body, c, 2)  # warm-up
                # The engine just before and just after the load, so a slow spell of the
                # shared machine shows on both sides of the ratio.
                before = engine_tokens_per_s(args.binary, c, length)
                r = wrk_run(f"{base}/embed", body, c, args.seconds)
                engine = (before + engine_tokens_per_s(args.binary, c, length)) / 2
                tps = r["rps"] * length
                rows.append({"len": length, "concurrency": c, **r, "tokens_per_s": tps,
                             "engine_tokens_per_s": engine, "ratio": tps / engine})
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print("| len | concurrency | requests/s | tokens/s | p50 ms | p99 ms | engine tokens/s (batch = concurrency) | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['len']} | {r['concurrency']} | {r['rps']:.1f} | {r['tokens_per_s']:.0f} | {r['p50_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r['engine_tokens_per_s']:.0f} | {r['ratio']:.2f} |")
    for r in rows:
        print(json.dumps(r))
    if any(r["non_2xx"] for r in rows):
        print("warning: some requests were not answered 200", file=sys.stderr)


if __name__ == "__main__":
    main()
