"""The daemon as users run it: `python3 main.py` with N feeds of the benchmark feed server at
an interval. After its cold start (every feed polled once) and one interval to settle, it
reads the daemon's CPU time from /proc over whole intervals, first with no feed changing,
then with a share of the feeds changed at the start of each interval. Prints one JSON object.
With `--replicas K --state postgresql://...`, K daemons share the database: the CPU figures
are their sum (so per 1,000 polls it is what a replica spends on the polls it makes), and
`--db-pid` adds the database server's CPU per 1,000 polls.

    python3 bench/daemon.py --base URL --feeds 1000 --interval 10 --intervals 3 [--profile OUT.svg]
    python3 bench/daemon.py --base URL --feeds 1000 --replicas 3 --state postgresql://... --db-pid PID

The polls counted are the answers the feed server gave (its /_stats), not the daemon's
own figures; the memory is the daemon's peak resident size (VmHWM; with replicas, the largest), cold start
included.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from proc import cpu_seconds, cpu_times, free_port, memory_mb, server_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
CHANGED_FRACTION = 0.015


def answers(base: str) -> dict[str, int]:
    """The feed server's answers so far, by status ("200", "304")."""
    counts = httpx.get(f"{base}/_stats", timeout=30).json()
    return {"200": counts.get("200", 0), "304": counts.get("304", 0), "total": sum(counts.values())}


def write_config(folder: Path, base: str, feeds: int, interval: float, extra: str) -> Path:
    config = folder / "bench.toml"
    # Every feed is on one loopback server, standing in for feeds on many hosts: the per-host
    # cap is lifted to the global one, as bench/worker.py does.
    config.write_text(f"interval = {interval}\nconcurrency = 100\nper_host_connections = 100\nrequest_timeout = 60\n{extra}" + "".join(
        f'[[feeds]]\nname = "feed{i}"\nurl = "{base}/feeds/{i}.rss"\n' for i in range(feeds)
    ))
    return config


def measure(pids: list[int], base: str, interval: float, mutate: bool, db_pid: int | None) -> dict:
    """One interval of the daemons: their CPU (summed), the database server's, and the polls
    the feed server answered meanwhile."""
    if mutate:
        httpx.post(f"{base}/_mutate", params={"fraction": CHANGED_FRACTION}, timeout=30)

    def now() -> tuple[dict[str, int], float, float, float]:
        times = [cpu_times(pid) for pid in pids]
        return answers(base), sum(t[0] for t in times), sum(t[1] for t in times), server_cpu_seconds(db_pid) if db_pid else 0.0

    before, user, system, db = now()
    time.sleep(interval)
    after, user_after, system_after, db_after = now()
    user, system = user_after - user, system_after - system
    polls = max(1, after["total"] - before["total"])
    return {"cpu_s": user + system, "user_s": user, "system_s": system, "polls": after["total"] - before["total"],
            "not_modified": after["304"] - before["304"], "cpu_s_per_1000": (user + system) * 1000 / polls,
            "db_cpu_s_per_1000": (db_after - db) * 1000 / polls if db_pid else None}


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        config = write_config(Path(folder), args.base, args.feeds, args.interval, args.config_extra)
        state = args.state or str(Path(folder) / "state.db")
        events = [Path(folder) / f"events-{n}.jsonl" for n in range(args.replicas)]
        logs = [Path(folder) / f"stderr-{n}.txt" for n in range(args.replicas)]
        started = time.monotonic()
        first = answers(args.base)

        def start(n: int) -> subprocess.Popen:
            with events[n].open("wb") as stdout, logs[n].open("wb") as stderr:  # the daemon keeps its own copies
                return subprocess.Popen(
                    [sys.executable, str(ROOT / "main.py"), "--config", str(config), "--port", str(free_port()), "--json",
                     "--state", state, "--log-level", "WARNING"],
                    stdout=stdout, stderr=stderr,
                )

        daemons = [start(n) for n in range(args.replicas)]
        pids = [daemon.pid for daemon in daemons]
        try:
            # Cold start: until every feed has had its first answer (a 200).
            deadline = started + args.cold_timeout
            while answers(args.base)["200"] - first["200"] < args.feeds:
                for daemon, log in zip(daemons, logs):
                    if daemon.poll() is not None:
                        raise RuntimeError(f"a daemon exited:\n{log.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cold start not over after {args.cold_timeout:g} s")
                time.sleep(0.2)
            cold_wall, cold_cpu = time.monotonic() - started, sum(cpu_seconds(pid) for pid in pids)
            time.sleep(args.interval)  # the last first polls' parsing, and the first repolls
            profiler = None
            if args.profile:
                profiler = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pids[0]), "--output", args.profile, "--rate", "1000",
                     "--duration", str(int(args.interval * args.intervals)), "--threads", "--nonblocking",
                     *(["--format", "speedscope"] if args.profile.endswith(".json") else []),
                     *(["--format", "raw"] if args.profile.endswith(".txt") else [])],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            unchanged = [measure(pids, args.base, args.interval, False, args.db_pid) for _ in range(args.intervals)]
            if profiler:
                profiler.wait()
            changed = [measure(pids, args.base, args.interval, True, args.db_pid) for _ in range(args.intervals)]
            time.sleep(args.interval * 1.2)  # every feed changed in the last interval is polled again
            peak = max(memory_mb(pid, "VmHWM") for pid in pids)
            resident = max(memory_mb(pid, "VmRSS") for pid in pids)
        finally:
            for daemon in daemons:
                daemon.terminate()
            for daemon in daemons:
                try:
                    daemon.wait(15)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()
        announced = sum(path.read_bytes().count(b"\n") for path in events)
    return {
        "feeds": args.feeds,
        "interval_s": args.interval,
        "replicas": args.replicas,
        "cold_start_wall_s": cold_wall,
        "cold_start_cpu_s": cold_cpu,
        "unchanged": unchanged,
        "changed": changed,
        "peak_rss_mb": peak,
        "rss_mb": resident,
        "events": announced,
        "returncodes": [daemon.returncode for daemon in daemons],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="the benchmark feed server (bench/feedserver.py)")
    parser.add_argument("--feeds", type=int, required=True)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--intervals", type=int, default=3, help="intervals measured, with and then without changes")
    parser.add_argument("--cold-timeout", type=float, default=600.0)
    parser.add_argument("--config-extra", default="", help="TOML lines added to the daemon's config")
    parser.add_argument("--profile", metavar="OUT", help="py-spy record the (first) daemon's unchanged intervals (.svg, .json: speedscope, .txt: collapsed stacks)")
    parser.add_argument("--replicas", type=int, default=1, help="daemons sharing the state (a PostgreSQL --state)")
    parser.add_argument("--state", help="the daemons' --state (default: a SQLite file in a temporary folder)")
    parser.add_argument("--db-pid", type=int, help="also measure this database server's CPU (its postmaster's pid)")
    args = parser.parse_args()
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
