"""Signed incident.io deliveries against the real `python3 main.py`, from C connections for
D seconds: deliveries/s, request latency, and end-to-end latency (request sent to its line
on the monitor's stdout). Prints one JSON object.

    python3 bench/webhooks.py --connections 10 --seconds 10 [--feeds-base URL --feeds 1000]
    python3 bench/webhooks.py --connections 10 --seconds 10 --bare   # the bare reference endpoint
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import aiohttp
import uvloop
from proc import cpu_seconds, free_port, server_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
KEY = b"benchmark-secret-24bytes"
SECRET = "whsec_" + base64.b64encode(KEY).decode()

def _template() -> bytes:
    payload = json.loads((ROOT / "tests/fixtures/webhooks/"
                          "incidentio_openapi_example_public_incident__incident_status_updated_v2.json").read_text())
    event = payload[payload["event_type"]]
    event["incident"]["id"] = "bench-@SEQ@"
    event["message"] = "seq=@SEQ@"
    return json.dumps(payload).encode()


TEMPLATE = _template()  # the client must stay cheap: it shares the machine with the monitor


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def delivery(seq: int) -> tuple[bytes, dict[str, str]]:
    body = TEMPLATE.replace(b"@SEQ@", str(seq).encode())
    msg_id, stamp = f"msg_{seq}", str(int(time.time()))
    digest = hmac.new(KEY, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    headers = {"webhook-id": msg_id, "webhook-timestamp": stamp,
               "webhook-signature": "v1," + base64.b64encode(digest).decode(), "content-type": "application/json"}
    return body, headers


class Arrivals(asyncio.Protocol):
    """The monitor's stdout, read on the client's own loop: a reader thread would fight the
    client for the GIL and add its waits to the latencies measured."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, bytes]] = []
        self._partial = b""

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        *complete, self._partial = (self._partial + data).split(b"\n")
        self.lines.extend((now, line) for line in complete)


async def load(url: str, connections: int, seconds: float, sent: dict[int, float], stdout: IO[bytes]) -> tuple[list[float], Arrivals]:
    latencies: list[float] = []
    counter = iter(range(10**9))
    _, arrivals = await asyncio.get_running_loop().connect_read_pipe(Arrivals, stdout)
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        async def worker() -> None:
            while time.monotonic() < deadline:
                seq = next(counter)
                body, headers = delivery(seq)
                started = time.monotonic()
                sent[seq] = started
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"delivery {seq}: HTTP {response.status}")
                latencies.append(time.monotonic() - started)

        await asyncio.gather(*(worker() for _ in range(connections)))
    await asyncio.sleep(1)  # the last lines
    return latencies, arrivals


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--feeds-base", help="poll this many never-seen feeds meanwhile (a cold cycle)")
    parser.add_argument("--feeds", type=int, default=0)
    parser.add_argument("--bare", action="store_true", help="load bench/bare_webhook.py instead of the monitor")
    parser.add_argument("--state", help="the monitor's --state (default: a SQLite file in a temporary folder)")
    parser.add_argument("--db-pid", type=int, help="also measure the CPU of this database server (postmaster) and its backends")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "bench.toml"
        feeds = range(args.feeds) if args.feeds_base else []
        config.write_text("interval = 3600\n" + "".join(
            f'[[feeds]]\nname = "feed{i}"\nurl = "{args.feeds_base}/feeds/{i}.rss"\n' for i in feeds
        ) + ('[[feeds]]\nname = "none"\nurl = "http://127.0.0.1:9/none.rss"\n' if not feeds else ""))
        command = [str(ROOT / "bench/bare_webhook.py"), "--port", str(port)] if args.bare else [
            str(ROOT / "main.py"), "--config", str(config), "--port", str(port), "--json",
            "--state", args.state or str(Path(folder) / "state.db"), "--log-level", "WARNING"]
        monitor = subprocess.Popen(
            [sys.executable, *command],
            env={**os.environ, "INCIDENT_IO_WEBHOOK_SECRET": SECRET},
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        sent: dict[int, float] = {}
        cpu = cpu_seconds(monitor.pid)
        db_cpu = server_cpu_seconds(args.db_pid) if args.db_pid else 0.0
        latencies, arrivals = uvloop.run(
            load(f"http://127.0.0.1:{port}/webhook/incident-io", args.connections, args.seconds, sent, monitor.stdout)
        )
        cpu = cpu_seconds(monitor.pid) - cpu
        db_cpu = server_cpu_seconds(args.db_pid) - db_cpu if args.db_pid else 0.0
        monitor.terminate()
        monitor.wait(10)
    arrived: dict[int, float] = {}
    for at, line in arrivals.lines:
        message = json.loads(line)["message"]
        if message.startswith("seq="):
            arrived[int(message[4:])] = at
    end_to_end = [arrived[seq] - sent[seq] for seq in sent if seq in arrived]
    print(json.dumps({
        "connections": args.connections,
        "seconds": args.seconds,
        "during_cold_cycle": bool(args.feeds_base),
        "deliveries": len(latencies),
        "per_second": len(latencies) / args.seconds,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "e2e_p50_ms": percentile(end_to_end, 0.50) * 1000,
        "e2e_p99_ms": percentile(end_to_end, 0.99) * 1000,
        "lost": len(sent) - len(end_to_end),
        "monitor_cpu_ms_per_delivery": cpu * 1000 / max(1, len(latencies)),
        "db_cpu_ms_per_delivery": db_cpu * 1000 / max(1, len(latencies)) if args.db_pid else None,
    }))


if __name__ == "__main__":
    main()
