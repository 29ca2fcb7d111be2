"""The config a new user meets: the shipped example, `--check-config`, every problem at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT, run_main

from status_monitor.config import ConfigError, build_config, load_file

EXAMPLE = ROOT / "monitor.example.toml"
# A commented-out line of TOML in the example: `# key = value` or `# [header]`, not prose.
COMMENTED_TOML = re.compile(r"^# ((?:[\w-]+ = .*)|(?:\[\[?[\w.]+\]\]?.*))$")


def _readme_example() -> str:
    section = (ROOT / "README.md").read_text().split("## Configuration file\n", 1)[1]
    return re.search(r"```toml\n(.*?)```", section, re.S).group(1)


def _uncommented(text: str) -> str:
    return "\n".join(COMMENTED_TOML.sub(r"\1", line) for line in text.splitlines()) + "\n"


def test_the_example_config_and_the_readme_example_load_as_they_are(tmp_path):
    assert _readme_example() == EXAMPLE.read_text()
    config = build_config((), str(EXAMPLE), env={})
    assert [f.name for f in config.feeds] == ["OpenAI", "AWS", "GitHub"]
    assert config.notify == () and config.incident_io_secret is None
    # Its commented-out secrets, feeds and notification routes are valid syntax once uncommented.
    full = tmp_path / "full.toml"
    full.write_text(_uncommented(EXAMPLE.read_text()))
    assert "\nurls = [" in full.read_text() and "\n[[feeds]]" in full.read_text()
    config = build_config((), str(full), env={})
    assert [f.name for f in config.feeds] == ["Internal", "OpenAI", "AWS", "GitHub"]
    assert len(config.notify) == 1 and config.incident_io_secret and config.secret_for("statuspage-github")


def _state_files_beside_the_example() -> dict[str, int]:
    """Name -> mtime in ns of the example's state file and its companions (a user may have run
    `make run` in this folder, which leaves them behind)."""
    return {p.name: p.stat().st_mtime_ns for p in ROOT.glob("monitor.db*")}


def test_check_config_accepts_the_example_and_starts_nothing(tmp_path):
    before = _state_files_beside_the_example()
    result = run_main("--config", str(EXAMPLE), "--check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config OK: 3 sources (OpenAI, AWS, GitHub)")
    assert not list(tmp_path.iterdir()) and _state_files_beside_the_example() == before


def test_check_config_reports_every_problem_at_once_with_full_key_paths(tmp_path):
    """The README's first example as it was: the file errors, the secret and the
    notification URL are all reported in one run, each with its key's full path."""
    path = tmp_path / "monitor.toml"
    path.write_text(
        "intervl = 180\n"
        "[sever]\nport = 8000\n"
        '[webhooks]\nincident_io_secret = "whsec_..."\n'
        '[webhooks.secrets]\nstatuspage-github = "a-long-random-token"\n'
        'providers = ["openai", "aws"]\n'
        '[[feeds]]\nname = "Internal"\nurl = "https://status.internal.example"\nintreval = 60\nnotify_timeout = 4\n'
        '[[notify]]\nurls = ["slack://...", "json://hooks.example/status"]\n'
    )
    result = run_main("--config", str(path), "--check-config", cwd=tmp_path,
                      env={"WEBHOOK_SECRET_ACME": "whsec_%%%", "NOTIFY_URLS": "json://ok.example nosuch://s3cret"})
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    where = f"error: config file {path}: "
    expected = [
        where + "webhooks.incident_io_secret: not a valid whsec_ secret",
        where + "webhooks.secrets.providers: Input should be a valid string; 'providers' is a top-level key:"
                " TOML files every key under the last header above it, so move it above [webhooks.secrets]",
        where + "feeds[1] ('Internal').intreval: unknown key; did you mean 'interval'?",
        where + "feeds[1] ('Internal').notify_timeout: unknown key; 'notify_timeout' is a top-level key",
        where + "notify[1].urls[1]: not a notification URL Apprise understands",
        where + "intervl: unknown key; did you mean 'interval'?",
        where + "sever: unknown key; did you mean 'server'?",
        "error: environment variable WEBHOOK_SECRET_ACME: not a valid whsec_ secret",
        "error: environment variable NOTIFY_URLS[2]: not a notification URL Apprise understands",
    ]
    for line in expected:
        assert any(found.startswith(line) for found in lines), (line, lines)
    assert lines[-1] == f"{len(expected)} problem(s) found" and len(lines) == len(expected) + 1
    assert "s3cret" not in result.stderr and "hooks.example" not in result.stderr


def test_provider_names_misspelt_or_misplaced_are_all_reported(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text('providers = ["openai", "githb", { name = "aws", colour = 1 }, 3, { name = "nope" }]\n')
    with pytest.raises(ConfigError) as caught:
        build_config((), str(path), env={}, watch=["claud"])
    where = f"config file {path}: "
    assert caught.value.problems == [
        where + "providers[2]: unknown provider 'githb'; did you mean 'github', 'gitlab'? (python3 main.py --list-providers lists them)",
        where + "providers[3] ('aws').colour: unknown key",
        where + "providers[4]: must be a provider name or a table { name = ... }",
        where + "providers[5] ('nope').name: unknown provider 'nope'; did you mean 'openai', 'linode'? (python3 main.py --list-providers lists them)",
        "--watch: unknown provider 'claud'; did you mean 'anthropic', 'plaid'? (python3 main.py --list-providers lists them)",
    ]


def test_top_level_keys_under_any_table_get_the_hint(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text('[server]\nport = 8001\ninterval = 60\nretention = 9\n[[notify]]\nurls = ["json://x.example"]\nstate = "s.db"\n')
    with pytest.raises(ConfigError) as caught:
        load_file(path)
    assert [p.split(": ", 1)[1] for p in caught.value.problems] == [
        "server.interval: unknown key; 'interval' is a top-level key: TOML files every key under the last header"
        " above it, so move it above [server] (before the first [header])",
        "server.retention: unknown key; did you mean the top-level key 'retention_days'? TOML files every key under"
        " the last header above it, so move it above [server] (before the first [header])",
        "notify[1].state: unknown key; 'state' is a top-level key: TOML files every key under the last header"
        " above it, so move it above [[notify]] (before the first [header])",
    ]


def test_a_relative_state_path_is_beside_the_config_file(tmp_path):
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "monitor.toml").write_text('state = "data/monitor.db"\n')
    config = build_config((), str(folder / "monitor.toml"), env={})
    assert Path(config.state_path) == folder / "data" / "monitor.db"
    flag = build_config((), str(folder / "monitor.toml"), env={}, state_path="here.db")
    assert flag.state_path == "here.db"  # a flag is relative to where one runs it
    (folder / "memory.toml").write_text('state = ":memory:"\n')
    assert build_config((), str(folder / "memory.toml"), env={}).state_path == ":memory:"


def test_catalogue_aliases_find_the_provider_people_mean(tmp_path):
    result = run_main("--watch", "claude", "--watch", "GCP", "--check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(Anthropic, Google Cloud)" in result.stdout


def test_version(tmp_path):
    result = run_main("--version", cwd=tmp_path)
    assert result.returncode == 0 and re.fullmatch(r"status-page-monitor \d+\.\d+\.\d+\n", result.stdout)
