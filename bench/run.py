"""Runs the benchmark suite: prints a table and writes the figures to bench/results/latest.json.

    python3 bench/run.py            # the full suite (about 10 minutes on 2 cores)
    python3 bench/run.py --quick    # small sizes, one run each (under a minute; CI runs this)

Every figure is the median of the runs made here; every ratio compares figures measured in
this same invocation. The monitor under test is the real one (bench/worker.py drives its
poller, handler and SQLite state; bench/webhooks.py drives `python3 main.py`), against a
feed server in another process (bench/feedserver.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).resolve().parent
PY = sys.executable
# Steady cycles measured after each run's cold cycle: a steady figure is the median of
# runs x STEADY_CYCLES cycles, since on this shared machine one cycle of 0.3 s varies by a quarter.
STEADY_CYCLES = 3


@contextmanager
def feed_server(feeds: int, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    process = subprocess.Popen([PY, str(HERE / "feedserver.py"), "--feeds", str(feeds), *extra],
                               stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    try:
        line = process.stdout.readline()
        port = int(line.strip().split("=")[1])
        scheme = "https" if "--tls" in extra else "http"
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def run_json(*command: str, env: dict[str, str] | None = None) -> dict:
    result = subprocess.run([PY, *command], capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def worker(base: str, feeds: int, env: dict[str, str] | None = None) -> dict:
    """A cold cycle, then STEADY_CYCLES steady ones, with 1.5 % of the feeds changed before each."""
    return run_json(str(HERE / "worker.py"), "--base", base, "--feeds", str(feeds), "--cycles", str(1 + STEADY_CYCLES),
                    "--mutate-between", "--concurrency", "100", env=env)


def steady_cycles(results: list[dict]) -> list[dict]:
    return [cycle for result in results for cycle in result["cycles"][1:]]


def median(values: list[float]) -> float:
    return statistics.median(values)


def repeat(runs: int, fn) -> list:
    return [fn() for _ in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each")
    parser.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    args = parser.parse_args()
    runs = 1 if args.quick else 3
    small, large = (200, 1000) if args.quick else (1000, 10000)
    webhook_seconds = 2 if args.quick else 10
    figures: dict[str, dict] = {}

    def per_1000(seconds: float, polls: int) -> float:
        return seconds * 1000 / polls

    # 1, 5, 7: steady and cold cycles, memory
    for n in (small, large):
        with feed_server(n) as base:
            results = repeat(runs, lambda: worker(base, n))
        cold = [r["cycles"][0] for r in results]
        steady = steady_cycles(results)
        figures[f"steady_{n}"] = {
            "feeds": n,
            "wall_s": median([c["wall_s"] for c in steady]),
            "cpu_s_per_1000": median([per_1000(c["cpu_s"], c["polls"]) for c in steady]),
            "not_modified": median([c["not_modified"] for c in steady]),
            "events": median([c["events"] for c in steady]),
            "errors": max(c["errors"] for c in steady),
            "rss_mb": median([c["rss_mb"] for c in steady]),
        }
        figures[f"cold_{n}"] = {
            "feeds": n,
            "wall_s": median([c["wall_s"] for c in cold]),
            "cpu_s": median([c["cpu_s"] for c in cold]),
            "errors": max(c["errors"] for c in cold),
        }

    # 2: the naive baseline, in this same run
    naive_feeds = 100 if args.quick else 1000
    with feed_server(naive_feeds) as base:
        naive = repeat(runs, lambda: run_json(str(HERE / "naive.py"), "--base", base, "--feeds", str(naive_feeds)))
    naive_cpu = median([per_1000(r["cpu_s"], r["feeds"]) for r in naive])
    figures["naive"] = {"feeds": naive_feeds, "cpu_s_per_1000": naive_cpu,
                        "wall_s_per_1000": median([per_1000(r["wall_s"], r["feeds"]) for r in naive])}
    figures["naive"]["ratio_vs_steady"] = naive_cpu / figures[f"steady_{small}"]["cpu_s_per_1000"]

    # 3: no validators, a channel date that changes on every answer
    with feed_server(small, "--no-validators") as base:
        results = repeat(runs, lambda: worker(base, small))
    figures["no_validators"] = {
        "feeds": small,
        "cpu_s_per_1000": median([per_1000(c["cpu_s"], c["polls"]) for c in steady_cycles(results)]),
        "not_modified": median([c["not_modified"] for c in steady_cycles(results)]),
    }

    # 4: a fresh TLS connection for every poll
    import trustme

    with tempfile.TemporaryDirectory() as folder:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ca_file, cert_file = Path(folder) / "ca.pem", Path(folder) / "cert.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
        with feed_server(small, "--tls", str(cert_file), str(cert_file), "--close") as base:
            results = repeat(runs, lambda: worker(base, small, env={"SSL_CERT_FILE": str(ca_file)}))
    figures["tls_fresh_connections"] = {
        "feeds": small,
        "cpu_s_per_1000": median([per_1000(c["cpu_s"], c["polls"]) for c in steady_cycles(results)]),
        "errors": max(c["errors"] for c in steady_cycles(results)),
    }

    # 6: webhooks, alone and during a cold cycle; the bare reference endpoint in the same run
    webhook_keys = ("per_second", "p50_ms", "p99_ms", "e2e_p50_ms", "e2e_p99_ms", "lost", "monitor_cpu_ms_per_delivery")
    for connections in (1, 10):
        for name, extra in ((f"webhooks_{connections}", ()), (f"bare_webhook_{connections}", ("--bare",))):
            results = repeat(runs, lambda: run_json(str(HERE / "webhooks.py"), "--connections", str(connections),
                                                    "--seconds", str(webhook_seconds), *extra))
            figures[name] = {key: median([r[key] for r in results]) for key in webhook_keys}
        figures[f"webhooks_{connections}"]["ratio_vs_bare"] = (
            figures[f"webhooks_{connections}"]["per_second"] / figures[f"bare_webhook_{connections}"]["per_second"]
        )
    with feed_server(small) as base:
        results = repeat(runs, lambda: run_json(str(HERE / "webhooks.py"), "--connections", "10", "--seconds",
                                                str(webhook_seconds), "--feeds-base", base, "--feeds", str(small)))
    figures["webhooks_10_during_cold_cycle"] = {key: median([r[key] for r in results]) for key in webhook_keys}

    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "quick": args.quick,
        "runs_per_figure": runs,
        "steady_cycles_per_run": STEADY_CYCLES,
        "figures": figures,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report, small, large)
    print(f"\nfigures written to {out}")


def print_table(report: dict, small: int, large: int) -> None:
    f = report["figures"]
    rows = [
        ("1. steady cycle, CPU per 1,000 polls", f"{small} feeds", f"{f[f'steady_{small}']['cpu_s_per_1000']:.2f} s",
         f"{f[f'steady_{small}']['not_modified']:.0f} of {small} were 304"),
        ("1. steady cycle, CPU per 1,000 polls", f"{large} feeds", f"{f[f'steady_{large}']['cpu_s_per_1000']:.2f} s",
         f"wall {f[f'steady_{large}']['wall_s']:.2f} s"),
        ("2. naive baseline, CPU per 1,000", f"{f['naive']['feeds']} feeds", f"{f['naive']['cpu_s_per_1000']:.1f} s",
         f"ours is {f['naive']['ratio_vs_steady']:.0f}x less"),
        ("3. no validators, CPU per 1,000", f"{small} feeds", f"{f['no_validators']['cpu_s_per_1000']:.2f} s", ""),
        ("4. fresh TLS connections, CPU per 1,000", f"{small} feeds", f"{f['tls_fresh_connections']['cpu_s_per_1000']:.2f} s", ""),
        ("5. cold cycle, wall", f"{small} feeds", f"{f[f'cold_{small}']['wall_s']:.2f} s", f"CPU {f[f'cold_{small}']['cpu_s']:.2f} s"),
        *(row for c in (1, 10) for row in (
            (f"6. webhooks, {c} connection{'s' if c > 1 else ''}", "", f"{f[f'webhooks_{c}']['per_second']:.0f}/s",
             f"p99 {f[f'webhooks_{c}']['p99_ms']:.1f} ms, end-to-end p99 {f[f'webhooks_{c}']['e2e_p99_ms']:.1f} ms, "
             f"{f[f'webhooks_{c}']['ratio_vs_bare']:.2f}x the bare endpoint's rate"),
            (f"   bare FastAPI endpoint, {c} connection{'s' if c > 1 else ''}", "", f"{f[f'bare_webhook_{c}']['per_second']:.0f}/s",
             f"p99 {f[f'bare_webhook_{c}']['p99_ms']:.1f} ms"),
        )),
        ("6. webhooks, 10 connections, cold cycle", f"{small} feeds", f"{f['webhooks_10_during_cold_cycle']['per_second']:.0f}/s",
         f"p99 {f['webhooks_10_during_cold_cycle']['p99_ms']:.1f} ms"),
        ("7. memory after a steady cycle", f"{small} feeds", f"{f[f'steady_{small}']['rss_mb']:.0f} MB", ""),
        ("7. memory after a steady cycle", f"{large} feeds", f"{f[f'steady_{large}']['rss_mb']:.0f} MB", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'scenario':<{width}}  {'size':<12}  {'figure':>10}  notes")
    for name, size, figure, note in rows:
        print(f"{name:<{width}}  {size:<12}  {figure:>10}  {note}")


if __name__ == "__main__":
    main()
