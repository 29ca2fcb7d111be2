"""The daemon as users run it: `python3 main.py` with N feeds of the benchmark feed server at
an interval. After its cold start (every feed polled once) and one interval to settle, it
reads the daemon's CPU time from /proc over whole intervals, first with no feed changing,
then with a share of the feeds changed at the start of each interval. Prints one JSON object.

    python3 bench/daemon.py --base URL --feeds 1000 --interval 10 --intervals 3 [--profile OUT.svg]

The polls counted are the answers the feed server gave (its /_stats), not the daemon's
own figures; the memory is the daemon's peak resident size (VmHWM), cold start included.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CHANGED_FRACTION = 0.015


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process (all its threads) so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def memory_mb(pid: int, field: str) -> float:
    """A VmXXX line of /proc/PID/status (VmHWM: peak resident size; VmRSS: now), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def measure(pid: int, base: str, interval: float, mutate: bool) -> dict:
    """One interval of the daemon: its CPU and the polls the feed server answered meanwhile."""
    if mutate:
        httpx.post(f"{base}/_mutate", params={"fraction": CHANGED_FRACTION}, timeout=30)
    before, (user, system) = answers(base), cpu_times(pid)
    time.sleep(interval)
    after, (user_after, system_after) = answers(base), cpu_times(pid)
    user, system = user_after - user, system_after - system
    polls = after["total"] - before["total"]
    return {"cpu_s": user + system, "user_s": user, "system_s": system, "polls": polls,
            "not_modified": after["304"] - before["304"], "cpu_s_per_1000": (user + system) * 1000 / max(1, polls)}


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        config = write_config(Path(folder), args.base, args.feeds, args.interval, args.config_extra)
        events, log = Path(folder) / "events.jsonl", Path(folder) / "stderr.txt"
        started = time.monotonic()
        first = answers(args.base)
        with events.open("wb") as stdout, log.open("wb") as stderr:
            daemon = subprocess.Popen(
                [sys.executable, str(ROOT / "main.py"), "--config", str(config), "--port", str(free_port()), "--json",
                 "--state", str(Path(folder) / "state.db"), "--log-level", "WARNING"],
                stdout=stdout, stderr=stderr,
            )
            try:
                # Cold start: until every feed has had its first answer (a 200).
                deadline = started + args.cold_timeout
                while answers(args.base)["200"] - first["200"] < args.feeds:
                    if daemon.poll() is not None:
                        raise RuntimeError(f"the daemon exited:\n{log.read_text()[-2000:]}")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cold start not over after {args.cold_timeout:g} s")
                    time.sleep(0.2)
                cold_wall, cold_cpu = time.monotonic() - started, cpu_seconds(daemon.pid)
                time.sleep(args.interval)  # the last first polls' parsing, and the first repolls
                profiler = None
                if args.profile:
                    profiler = subprocess.Popen(
                        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(daemon.pid), "--output", args.profile, "--rate", "200",
                         "--duration", str(int(args.interval * args.intervals)), "--threads", "--nonblocking",
                         *(["--format", "speedscope"] if args.profile.endswith(".json") else [])],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )
                unchanged = [measure(daemon.pid, args.base, args.interval, False) for _ in range(args.intervals)]
                if profiler:
                    profiler.wait()
                changed = [measure(daemon.pid, args.base, args.interval, True) for _ in range(args.intervals)]
                time.sleep(args.interval * 1.2)  # every feed changed in the last interval is polled again
                peak, resident = memory_mb(daemon.pid, "VmHWM"), memory_mb(daemon.pid, "VmRSS")
            finally:
                daemon.terminate()
                try:
                    daemon.wait(15)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()
        announced = sum(1 for _ in events.open("rb"))
    return {
        "feeds": args.feeds,
        "interval_s": args.interval,
        "cold_start_wall_s": cold_wall,
        "cold_start_cpu_s": cold_cpu,
        "unchanged": unchanged,
        "changed": changed,
        "peak_rss_mb": peak,
        "rss_mb": resident,
        "events": announced,
        "returncode": daemon.returncode,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="the benchmark feed server (bench/feedserver.py)")
    parser.add_argument("--feeds", type=int, required=True)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--intervals", type=int, default=3, help="intervals measured, with and then without changes")
    parser.add_argument("--cold-timeout", type=float, default=600.0)
    parser.add_argument("--config-extra", default="", help="TOML lines added to the daemon's config")
    parser.add_argument("--profile", metavar="OUT", help="py-spy record the unchanged intervals (.svg or .json)")
    args = parser.parse_args()
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
