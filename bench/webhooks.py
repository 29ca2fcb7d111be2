"""Signed incident.io deliveries against the real `python3 main.py`, from C connections for
D seconds: deliveries/s, request latency, and end-to-end latency (request sent to its line
on the monitor's stdout). Prints one JSON object.

    python3 bench/webhooks.py --connections 10 --seconds 10 [--feeds-base URL --feeds 1000]
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
import threading
import time
from pathlib import Path

import aiohttp
import uvloop

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def load(url: str, connections: int, seconds: float, sent: dict[int, float]) -> list[float]:
    latencies: list[float] = []
    counter = iter(range(10**9))
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
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--feeds-base", help="poll this many never-seen feeds meanwhile (a cold cycle)")
    parser.add_argument("--feeds", type=int, default=0)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "bench.toml"
        feeds = range(args.feeds) if args.feeds_base else []
        config.write_text("interval = 3600\n" + "".join(
            f'[[feeds]]\nname = "feed{i}"\nurl = "{args.feeds_base}/feeds/{i}.rss"\n' for i in feeds
        ) + ('[[feeds]]\nname = "none"\nurl = "http://127.0.0.1:9/none.rss"\n' if not feeds else ""))
        monitor = subprocess.Popen(
            [sys.executable, *os.environ.get("BENCH_PY_ARGS", "").split(), str(ROOT / "main.py"), "--config", str(config), "--port", str(port), "--json",
             "--state", str(Path(folder) / "state.db"), "--log-level", "WARNING"],
            env={**os.environ, "INCIDENT_IO_WEBHOOK_SECRET": SECRET},
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        arrived: dict[int, float] = {}

        def read() -> None:
            for line in monitor.stdout:
                message = json.loads(line)["message"]
                if message.startswith("seq="):
                    arrived[int(message[4:])] = time.monotonic()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        sent: dict[int, float] = {}
        latencies = uvloop.run(load(f"http://127.0.0.1:{port}/webhook/incident-io", args.connections, args.seconds, sent))
        time.sleep(1)
        monitor.terminate()
        monitor.wait(10)
        reader.join(5)
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
    }))


if __name__ == "__main__":
    main()
