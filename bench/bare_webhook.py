"""The reference the issue measured: a bare signed FastAPI endpoint (Standard Webhooks HMAC
check, JSON parse, one line on stdout) on uvicorn with uvloop and httptools. bench/run.py
loads it with the same client as the monitor, in the same run, to give a ratio.

    python3 bench/bare_webhook.py --port N
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

KEY = base64.b64decode(os.environ["INCIDENT_IO_WEBHOOK_SECRET"].removeprefix("whsec_"))

app = FastAPI()


@app.post("/webhook/incident-io")
async def incident_io(request: Request) -> JSONResponse:
    body = await request.body()
    headers = request.headers
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(headers["webhook-signature"].partition(",")[2], expected):
        return JSONResponse({"error": "bad signature"}, status_code=401)
    payload = json.loads(body)
    print(json.dumps({"message": payload[payload["event_type"]]["message"]}), flush=True)
    return JSONResponse({"status": "accepted"})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False)
