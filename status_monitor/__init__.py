"""A monitor of third-party status pages: each new incident update, exactly once.

The package by role (README, "Project layout"): `model` (the event, at the bottom),
`config`, `sources/` (catalogue, HTTP transport, feed and JSON API parsers, detection),
`webhooks/` (payloads, signatures), `storage/` (the Store interface and its backends),
`outputs/` (stdout, notifications, metrics, dashboard). The top-level modules main.py,
rss_poller.py, webhook_server.py and event_handler.py wire them together.
"""

__version__ = "1.0.0"
