"""`--history`: which events `--since` keeps, and what a `--provider` that matches nothing says."""

from __future__ import annotations

import json

from conftest import feed, run_main


def test_since_applies_to_the_time_printed_and_an_unknown_provider_lists_the_known_ones(tmp_path, feeds):
    feeds.set("/github.atom", feed("statuspage_github_history_snapshot_2026-07-09.atom"))
    feeds.set("/openai.rss", feed("incidentio_openai_feed_trimmed.rss"))
    config = tmp_path / "monitor.toml"
    config.write_text(f'[[feeds]]\nname = "GitHub"\nurl = "{feeds.url("/github.atom")}"\n'
                      f'[[feeds]]\nname = "OpenAI Cloud"\nurl = "{feeds.url("/openai.rss")}"\n')
    first = run_main("--config", str(config), "--once", "--json", cwd=tmp_path)
    printed = {e["provider"]: e["occurred_at"] for e in map(json.loads, first.stdout.splitlines())}
    assert printed["OpenAI Cloud"] == "2025-10-20T09:43:12Z" and printed["GitHub"] > "2026-01-01"
    # Both were received just now; only GitHub's update was posted after 2026-01-01.
    since = run_main("--config", str(config), "--history", "--json", "--since", "2026-01-01", cwd=tmp_path)
    assert [json.loads(line)["provider"] for line in since.stdout.splitlines()] == ["GitHub"]
    text = run_main("--config", str(config), "--history", "--since", "2025-10-20T09:43:12Z", cwd=tmp_path)
    assert text.stdout.count("Provider:") == 2 and "[2025-10-20 09:43:12 UTC] Provider: OpenAI Cloud" in text.stdout
    unknown = run_main("--config", str(config), "--history", "--provider", "openai", cwd=tmp_path)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert ("error: --provider 'openai': no stored events; did you mean 'OpenAI Cloud'?"
            " (providers with events: GitHub, OpenAI Cloud)") in unknown.stderr
    exact = run_main("--config", str(config), "--history", "--provider", "openai cloud", cwd=tmp_path)
    assert exact.returncode == 0 and exact.stdout.count("Provider: OpenAI Cloud") == 1
