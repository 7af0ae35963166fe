#!/usr/bin/env python3
"""Two `bertrt serve` replicas behind nginx on loopback, a load through nginx, one replica
killed (SIGKILL) mid-run: every request still gets 200 (nginx retries what the dead
replica dropped on the other), answers stay right, and none hangs.

    python3 examples/nginx/replicas.py [BERTRT_BINARY]

Uses examples/nginx/nginx.conf with free ports in place of 3100-3102, in a scratch
folder; needs nginx (Debian's nginx-light) and the default model (fetched by bertrt on
first use). Exits non-zero on the first failure.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLIENTS = 8
SECONDS = 6.0
KILL_AT = 2.0
TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> tuple[int, object]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except Exception as e:  # connection errors: no status
        return 0, repr(e)


def wait_ready(url: str) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{url} never answered")


def start_replica(binary: str, port: int) -> subprocess.Popen:
    p = subprocess.Popen([binary, "serve", "--port", str(port)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    if "listening on" not in line:
        raise SystemExit(f"replica on {port} did not start: {line!r}")
    return p


def main() -> None:
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/bertrt"
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        raise SystemExit("nginx is needed (apt-get install nginx-light)")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    front, a, b = free_port(), free_port(), free_port()
    prefix = Path(tempfile.mkdtemp(prefix="bertrt-nginx-"))
    (prefix / "tmp").mkdir()
    conf = (HERE / "nginx.conf").read_text()
    conf = conf.replace("127.0.0.1:3100", f"127.0.0.1:{front}")
    conf = conf.replace("127.0.0.1:3101", f"127.0.0.1:{a}").replace("127.0.0.1:3102", f"127.0.0.1:{b}")
    (prefix / "nginx.conf").write_text(conf)
    procs: list[subprocess.Popen] = []
    try:
        replicas = [start_replica(binary, a), start_replica(binary, b)]
        procs += replicas
        procs.append(subprocess.Popen([nginx, "-p", str(prefix), "-c", "nginx.conf"],
                                      stderr=open(prefix / "nginx.log", "w")))
        base = f"http://127.0.0.1:{front}"
        wait_ready(f"{base}/health")
        texts = [f"client {i} asks about replicas and load balancers" for i in range(CLIENTS)]
        want = {}
        for t in texts:
            status, body = post(f"{base}/embed", {"inputs": t})
            if status != 200:
                raise SystemExit(f"warm-up: {status} {body}")
            want[t] = body[0]
        results: list[tuple[float, float, int, str]] = []
        lock = threading.Lock()
        start = time.time()

        def client(text: str) -> None:
            while time.time() - start < SECONDS:
                t0 = time.time()
                status, body = post(f"{base}/embed", {"inputs": text})
                took = time.time() - t0
                wrong = ""
                if status == 200:
                    d = max(abs(x - y) for x, y in zip(body[0], want[text]))
                    if not d <= 1e-5:
                        wrong = f"answer differs by {d}"
                else:
                    wrong = str(body)[:200]
                with lock:
                    results.append((t0 - start, took, status, wrong))

        threads = [threading.Thread(target=client, args=(t,)) for t in texts]
        for t in threads:
            t.start()
        time.sleep(KILL_AT)
        replicas[0].send_signal(signal.SIGKILL)
        killed = time.time() - start
        for t in threads:
            t.join()
        after = [r for r in results if r[0] > killed]
        bad = [r for r in results if r[2] != 200 or r[3]]
        slowest = max(r[1] for r in results)
        print(f"{len(results)} requests through nginx, {len(after)} after replica 1 was killed at "
              f"{killed:.1f} s; slowest {slowest * 1e3:.0f} ms; not 200 or wrong: {len(bad)}")
        if bad:
            for r in bad[:10]:
                print("  ", r)
            raise SystemExit(1)
        if len(after) < CLIENTS or slowest >= TIMEOUT:
            raise SystemExit("the load did not go on after the kill")
        print("ok: every request answered 200 with the right embedding, none hung")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(prefix, ignore_errors=True)


if __name__ == "__main__":
    main()
