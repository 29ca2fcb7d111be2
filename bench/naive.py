"""The naive baseline, what a user writes by hand: sequential `requests.get` and
`feedparser.parse` of every feed, no conditional headers. Prints its CPU and wall time."""

from __future__ import annotations

import argparse
import json
import time

import feedparser
import requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--feeds", type=int, required=True)
    args = parser.parse_args()
    session = requests.Session()
    wall, cpu = time.perf_counter(), time.process_time()
    entries = 0
    for index in range(args.feeds):
        response = session.get(f"{args.base}/feeds/{index}.rss", timeout=30)
        entries += len(feedparser.parse(response.content).entries)
    print(json.dumps({"feeds": args.feeds, "entries": entries,
                      "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}))


if __name__ == "__main__":
    main()
