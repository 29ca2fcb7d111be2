"""Webhook payloads (incident.io, Statuspage, generic) and their signature schemes."""
