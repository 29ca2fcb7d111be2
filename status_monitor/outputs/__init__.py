"""Where events go: stdout, notifications, Prometheus metrics and the dashboard."""
