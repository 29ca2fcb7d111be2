"""The monitor under test, in its own process: the real poller, handler and SQLite state,
polling the benchmark feed server. Prints one JSON object with the figures of each cycle.

    python3 bench/worker.py --base URL --feeds N --cycles 2 [--mutate-between] [--concurrency 100]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from event_handler import EventHandler  # noqa: E402
from main import event_loop_factory, freeze_startup_heap, release_free_memory  # noqa: E402
from rss_poller import FeedPoller, make_client  # noqa: E402
from status_monitor.config import Config, FeedConfig  # noqa: E402
from status_monitor.outputs.stdout import StreamOutput  # noqa: E402
from status_monitor.storage import open_store  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(args: argparse.Namespace) -> dict:
    feeds = tuple(FeedConfig(f"feed{i}", f"{args.base}/feeds/{i}.rss") for i in range(args.feeds))
    with tempfile.TemporaryDirectory() as folder:
        # The benchmark's feeds stand for feeds on many hosts, all served by one loopback
        # server: the per-host cap is lifted to the global one, so the figures measure the
        # same polls as before it existed.
        config = replace(Config(feeds=feeds), concurrency=args.concurrency, per_host_connections=args.concurrency,
                         state_path=os.path.join(folder, "state.db"), request_timeout=60.0)
        store = open_store(config.state_path)
        await store.open()
        with open(os.devnull, "w") as devnull:
            handler = EventHandler(store, [StreamOutput(json_lines=True, stream=devnull)])
            await handler.load()
            async with make_client(config) as client:
                poller = FeedPoller(config, handler, store, client)
                await poller.load()
                freeze_startup_heap()  # as the daemon does once it is set up
                cycles = []
                for cycle in range(args.cycles):
                    if cycle and args.mutate_between:
                        httpx.post(f"{args.base}/_mutate", params={"fraction": 0.015}, verify=False)
                    before = poller.stats.totals()
                    events_before = handler.stats.events_total
                    gc.collect()
                    wall, cpu = time.perf_counter(), time.process_time()
                    if args.profile and cycle == args.cycles - 1:
                        profiler = cProfile.Profile(time.thread_time)
                        profiler.enable()
                    await poller.poll_all()
                    await store.flush()
                    if args.profile and cycle == args.cycles - 1:
                        profiler.disable()
                        pstats.Stats(profiler, stream=sys.stderr).sort_stats(args.profile).print_stats(30)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    trim = time.perf_counter()
                    release_free_memory()  # as the daemon's housekeeping does after a burst of parsing
                    trim = time.perf_counter() - trim
                    after = poller.stats.totals()
                    cycles.append({
                        "wall_s": wall,
                        "cpu_s": cpu,
                        "polls": after["polls_total"] - before["polls_total"],
                        "not_modified": after["not_modified_total"] - before["not_modified_total"],
                        "errors": after["poll_errors_total"] - before["poll_errors_total"],
                        "events": handler.stats.events_total - events_before,
                        "rss_mb": rss_mb(),
                        "trim_s": trim,
                    })
        await store.close()
    return {"feeds": args.feeds, "concurrency": args.concurrency, "cycles": cycles}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--feeds", type=int, required=True)
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--mutate-between", action="store_true")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--profile", metavar="SORT", help="cProfile the last cycle to stderr, sorted by SORT")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        print(json.dumps(runner.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
