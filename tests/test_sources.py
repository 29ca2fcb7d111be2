"""Issue 7: JSON API sources, page-root detection, the provider catalogue, component and impact
filters. Parsers on fixture files; the rest against the real monitor and a loopback server
that serves (and changes) the JSON documents."""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import RunningMonitor, feed, make_config, run_main
from feedserver import FeedServer
from test_state import statuspage_rss

from status_monitor.config import FeedConfig
from status_monitor.sources.apis import component_changes, statuspage_incident
from status_monitor.sources.catalogue import CATALOGUE_PATH, DEFAULT_PROVIDERS, CatalogueError, load_catalogue, lookup
from status_monitor.sources.detect import advertised_feeds, api_kind, page_root, poll_targets
from status_monitor.sources.feeds import ComponentState
from status_monitor.sources.kinds import parse_feed, parse_source
from status_monitor.sources.readers import FeedError
from status_monitor.webhooks.payloads import generic_events

GITHUB_INCIDENTS = "statuspage_github_incidents.json"
GITHUB_SUMMARY = "statuspage_github_summary_2026-07-24_major.json"
OPENAI_INCIDENTS = "incidentio_openai_incidents_subset.json"
OPENAI_SUMMARY = "incidentio_openai_summary_2026-07-22_minor.json"


def doc(name: str) -> dict:
    return json.loads(feed(name))


def parse(body: bytes | dict, kind: str, url: str = "https://page.example/api/v2/incidents.json", provider: str = "P"):
    data = json.dumps(body).encode() if isinstance(body, dict | list) else body
    return parse_source(data, provider, url, kind)


# --- parsers (pure, on fixture files) ---

def test_statuspage_api_gives_every_update_with_its_id_components_and_impact():
    parsed = parse(feed(GITHUB_INCIDENTS), "statuspage-api")
    assert len(parsed.incidents) == 5
    first = parsed.incidents[0]
    assert [u.status for u in first.updates][0] == "Investigating" and first.updates[-1].status == "Resolved"
    assert all(u.keys[0].startswith("statuspage-update:") for i in parsed.incidents for u in i.updates)
    assert len({u.keys[0] for i in parsed.incidents for u in i.updates}) == sum(len(i.updates) for i in parsed.incidents)
    assert first.updates[-1].impact == "minor" and first.updates[-1].source == "api"
    summary = parse(feed(GITHUB_SUMMARY), "statuspage-api")
    assert summary.incidents[0].open and summary.incidents[0].updates[-1].components == ["Pull Requests"]


def test_incidentio_api_updates_are_named_by_id_and_match_the_feed_keys():
    api = parse(feed(OPENAI_INCIDENTS), "incidentio-api", "https://status.openai.com/api/v2/incidents.json", "OpenAI")
    assert len(api.incidents) == 17 and sum(len(i.updates) for i in api.incidents) == 63
    assert api.incidents[0].updates[0].url == "https://status.openai.com/incidents/01KZ6CT9K9Q52S3707W75MNBGB"
    api_keys = {k for i in api.incidents for u in i.updates for k in u.keys}
    history = parse_feed(feed("incidentio_openai_history_2026-08-31_first8.atom"), "OpenAI", "https://status.openai.com/history.atom")
    in_both = [i for i in history.incidents if i.incident_id in {a.incident_id for a in api.incidents}]
    assert len(in_both) == 6
    assert all(i.updates[0].keys[0] in api_keys for i in in_both)  # the same update, printed once


def test_google_cloud_and_slack_json():
    google = parse(feed("gcp_incidents.json"), "google-cloud-api", "https://status.cloud.google.com/incidents.json")
    incident = google.incidents[0]
    assert incident.incident_id == "3BvH3LVGcupoYqV6F4Nw" and not incident.open
    assert incident.updates[-1].status == "Resolved" and incident.updates[0].status == "Service disruption"
    assert incident.updates[0].impact == "major"
    slack = parse(feed("slack_history.json"), "slack-api", "https://slack-status.com/api/v2.0.0/history")
    active = slack.incidents[0]
    assert active.open and len(active.updates) == 6 and active.updates[0].status == "Active"
    assert active.updates[0].components == ["Messaging", "Workspace/Org Administration"]
    assert slack.incidents[1].updates[-1].status == "Resolved" and not slack.incidents[1].open


def test_bad_json_documents_are_errors_not_empty_sources():
    for body in (b"<!doctype html><html>oops</html>", b"{not json", json.dumps({"no": "incidents"}).encode(), b"[1, 2"):
        with pytest.raises(FeedError):
            parse(body, "statuspage-api")
    with pytest.raises(FeedError):
        parse({"page": {}}, "statuspage-components")


def test_component_changes_are_events_and_first_sight_is_quiet_when_operational():
    parsed = parse(feed(GITHUB_SUMMARY), "statuspage-components")
    states = {c.name: c for c in parsed.components}
    assert states["Pull Requests"].status == "major_outage" and len(parsed.components) > 10
    first = component_changes("GitHub", "https://www.githubstatus.com", {}, parsed.components)
    assert [(e.status, e.components) for e in first] == [("Major outage", ["Pull Requests"])]
    before = {c.id: c.status for c in parsed.components}
    recovered = [ComponentState(c.id, c.name, "operational", datetime.now(timezone.utc)) for c in parsed.components]
    back = component_changes("GitHub", "https://www.githubstatus.com", before, recovered)
    assert [(e.status, e.message) for e in back] == [("Operational", "Pull Requests: Major outage -> Operational")]
    assert component_changes("GitHub", "x", before, parsed.components) == []


def test_a_component_webhook_and_the_summary_name_the_same_incident():
    """So that a component degraded by one source and recovered by the other is not left open."""
    hook = {"component_update": {"id": "u1", "component_id": "c1", "old_status": "operational",
                                 "new_status": "major_outage", "created_at": "2026-03-04T10:00:00Z"},
            "component": {"id": "c1", "name": "API"}}
    [degraded] = generic_events("P", hook)
    [recovered] = component_changes("P", "https://x.test", {"c1": "major_outage"},
                                    [ComponentState("c1", "API", "operational", None)])
    assert degraded.incident_id == recovered.incident_id
    assert (degraded.source, degraded.keys, degraded.message) == ("webhook", ("statuspage-component:u1",),
                                                                  "API: Operational -> Major outage")


def test_statuspage_api_feed_and_webhook_name_an_update_alike():
    now = datetime(2026, 3, 4, 10, 0, tzinfo=timezone.utc)
    blocks = [(now, "Investigating", "Errors"), (now + timedelta(minutes=30), "Resolved", "Fixed")]
    incident = {"id": "abc123", "name": "Errors", "status": "resolved", "incident_updates": [
        {"id": f"u{n}", "status": label.lower(), "body": text, "created_at": when.isoformat().replace("+00:00", "Z"),
         "display_at": when.isoformat().replace("+00:00", "Z")} for n, (when, label, text) in enumerate(blocks)]}
    from_feed = parse_feed(statuspage_rss("abc123", blocks), "P", "https://x.test/history.rss").incidents[0].updates
    from_api = parse({"incidents": [incident]}, "statuspage-api").incidents[0].updates
    from_webhook = statuspage_incident("P", incident, "webhook")
    assert [u.keys[0] for u in from_feed] == [u.keys[1] for u in from_api] == [u.keys[1] for u in from_webhook]


def test_detection_rules():
    assert api_kind(doc(GITHUB_SUMMARY)) == "statuspage-api"
    assert api_kind(doc(OPENAI_SUMMARY)) == "incidentio-api"
    assert api_kind({"something": "else"}) is None
    html = ('<html><head><link rel="alternate" type="application/rss+xml" href="/history.rss">'
            "<link rel='alternate' type='application/atom+xml' href='https://cdn.example/history.atom'>"
            '<link rel="stylesheet" href="/a.css"></head></html>')
    assert advertised_feeds(html, "https://page.example") == ["https://cdn.example/history.atom", "https://page.example/history.rss"]
    assert page_root("https://www.githubstatus.com/api/v2/incidents.json") == "https://www.githubstatus.com"
    targets = poll_targets(FeedConfig("GitHub", "https://www.githubstatus.com/", "statuspage-api"))
    assert [(urlsplit(t.url).path, t.kind) for t in targets] == [
        ("/api/v2/incidents.json", "statuspage-api"), ("/api/v2/summary.json", "statuspage-components")]
    assert poll_targets(FeedConfig("X", "https://x.example"))[0].kind == "detect"
    assert poll_targets(FeedConfig("X", "https://x.example/feed.rss")) == [FeedConfig("X", "https://x.example/feed.rss")]


# --- the catalogue ---

def test_catalogue_entries_parse_are_unique_and_well_formed():
    catalogue = load_catalogue()
    assert len(catalogue) >= 40
    names = {p.name for p in catalogue.values()}
    for wanted in ("OpenAI", "Anthropic", "GitHub", "GitLab", "AWS", "Google Cloud", "Azure", "Cloudflare", "Fastly",
                   "Slack", "Zoom", "Stripe", "Twilio", "Datadog", "Atlassian", "Vercel", "Netlify"):
        assert wanted in names
    assert len({p.name.casefold() for p in catalogue.values()}) == len(catalogue)
    assert len({p.page for p in catalogue.values()}) == len(catalogue)
    for provider in catalogue.values():
        for url in filter(None, (provider.page, provider.url)):
            parts = urlsplit(url)
            assert parts.scheme == "https" and "." in parts.netloc and " " not in url, provider
        if provider.kind in ("statuspage-api", "incidentio-api"):
            assert urlsplit(provider.page).path in ("", "/"), provider  # the API hangs off the page root
        if provider.kind in ("per-update", "google-cloud-api", "slack-api"):
            assert provider.url, provider  # these sources are not at the page itself
    assert set(DEFAULT_PROVIDERS) <= set(catalogue)


def test_catalogue_refuses_duplicates_and_suggests_names(tmp_path):
    text = CATALOGUE_PATH.read_text()
    broken = tmp_path / "providers.toml"
    broken.write_text(text + '\n[[provider]]\nid = "github"\nname = "GitHub again"\npage = "https://x.example"\n'
                              'checked = 2026-11-30\n')
    with pytest.raises(CatalogueError, match="listed twice"):
        load_catalogue(broken)
    broken.write_text('[[provider]]\nid = "x"\nname = "X"\npage = "ftp://x.example"\nchecked = 2026-11-30\n')
    with pytest.raises(CatalogueError, match="http"):
        load_catalogue(broken)
    with pytest.raises(CatalogueError, match="did you mean 'github'"):
        lookup(load_catalogue(), "githb")
    assert lookup(load_catalogue(), "google cloud").id == "google-cloud"


def test_list_providers_and_watch_from_the_command_line(tmp_path):
    listed = run_main("--list-providers", cwd=tmp_path)
    assert listed.returncode == 0 and listed.stderr == ""
    rows = listed.stdout.splitlines()
    assert len(rows) == len(load_catalogue()) + 1 and rows[0].split()[:2] == ["ID", "NAME"]
    assert any(row.split()[:3] == ["github", "GitHub", "https://www.githubstatus.com"] and "statuspage-api" in row for row in rows)
    unknown = run_main("--watch", "githb", "--once", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown provider 'githb'; did you mean 'github'" in unknown.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('providers = ["openai", {name = "clodflare", min_impact = "major"}]\n')
    from_file = run_main("--config", str(bad), "--once", cwd=tmp_path)
    assert from_file.returncode == 2
    assert "providers[2] ('clodflare').name: unknown provider 'clodflare'; did you mean 'cloudflare'" in from_file.stderr


def test_the_default_list_comes_from_the_catalogue():
    import main

    catalogue = load_catalogue()
    assert [c["name"] for c in main.feed_configs] == [catalogue[i].name for i in DEFAULT_PROVIDERS]
    assert {c["kind"] for c in main.feed_configs} >= {"statuspage-api", "incidentio-api"}


# --- against the real monitor and a loopback server ---

def _summary(statuses: dict[str, str]) -> dict:
    summary = copy.deepcopy(doc(GITHUB_SUMMARY))
    summary["incidents"] = []
    for component in summary["components"]:
        if component["name"] in statuses:
            component["status"] = statuses[component["name"]]
            component["updated_at"] = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return summary


def _serve_json(feeds, path: str, data) -> None:
    feeds.set(path, json.dumps(data), content_type="application/json")


def _open_incident(incidents: dict) -> dict:
    """The fixture's newest incident, reopened and moved to now, so that it is news at a first poll."""
    incident = copy.deepcopy(incidents["incidents"][0])
    now = datetime.now(timezone.utc)
    incident.update(id="open0001", name="Reopened incident", status="investigating")
    incident["incident_updates"] = [dict(incident["incident_updates"][-1], id="openupdate1", status="investigating",
                                         created_at=now.isoformat(), display_at=now.isoformat())]
    return incident


def test_statuspage_api_source_announces_updates_incidents_and_component_changes(tmp_path, feeds):
    incidents = doc(GITHUB_INCIDENTS)
    incidents["incidents"].insert(0, _open_incident(incidents))
    _serve_json(feeds, "/gh/api/v2/incidents.json", incidents)
    _serve_json(feeds, "/gh/api/v2/summary.json", _summary({"Pull Requests": "major_outage"}))
    config = make_config(tmp_path, interval=0.3)
    config = replace(config, feeds=(FeedConfig("GitHub", feeds.url("/gh"), "statuspage-api"),))
    with RunningMonitor(config) as monitor:
        monitor.wait_for(lambda: len(monitor.output.events) == 2)  # the open incident and the outage
        first = [(e.status, e.title) for e in monitor.output.events]
        incident = incidents["incidents"][0]
        incident["incident_updates"].insert(0, {
            "id": "newupdate1", "status": "identified", "body": "Found it", "affected_components": [
                {"code": "x", "name": "Actions", "old_status": "operational", "new_status": "degraded_performance"}],
            "created_at": datetime.now(timezone.utc).isoformat(), "display_at": datetime.now(timezone.utc).isoformat()})
        fresh = dict(_open_incident(incidents), id="new00002", name="A new incident")
        fresh["incident_updates"] = [dict(fresh["incident_updates"][0], id="newincupdate")]
        incidents["incidents"].insert(0, fresh)
        _serve_json(feeds, "/gh/api/v2/incidents.json", incidents)
        _serve_json(feeds, "/gh/api/v2/summary.json", _summary({"Pull Requests": "operational", "Actions": "partial_outage"}))
        monitor.wait_for(lambda: len(monitor.output.events) == 6)
        time.sleep(1.0)
        later = monitor.output.events[2:]
        conditional = [r for r in feeds.requests_to("/gh/api/v2/incidents.json") if "if-none-match" in r.headers]
    assert sorted(first) == [("Investigating", "Reopened incident"), ("Major outage", "Pull Requests status")]
    assert sorted((e.status, e.title, tuple(e.components)) for e in later) == [
        ("Identified", "Reopened incident", ("Actions",)), ("Investigating", "A new incident", ()),
        ("Operational", "Pull Requests status", ("Pull Requests",)), ("Partial outage", "Actions status", ("Actions",))]
    assert len(monitor.output.events) == 6  # nothing twice
    assert conditional and any(r.status == 304 for r in conditional)


@pytest.fixture
def pages(servers):
    """One loopback server per status page: detection starts at a host's root."""
    return lambda: servers(FeedServer)


def _detect_config(tmp_path, **roots: FeedServer):
    config = make_config(tmp_path, interval=0.3)
    return replace(config, feeds=tuple(FeedConfig(name, server.url("")) for name, server in roots.items()))


def test_page_roots_are_detected_per_family_reported_and_remembered(tmp_path, pages, caplog):
    caplog.set_level(logging.INFO)
    sp, io, fd, cm = pages(), pages(), pages(), pages()
    _serve_json(sp, "/api/v2/summary.json", doc(GITHUB_SUMMARY))
    _serve_json(sp, "/api/v2/incidents.json", doc(GITHUB_INCIDENTS))
    _serve_json(io, "/api/v2/summary.json", doc(OPENAI_SUMMARY))
    _serve_json(io, "/api/v2/incidents.json", doc(OPENAI_INCIDENTS))
    fd.set("/", '<html><link rel="alternate" type="application/atom+xml" href="/history.atom"></html>', content_type="text/html")
    fd.set("/history.atom", feed("statuspage_claude_history.atom"))
    cm.set("/", "<html>no links here</html>", content_type="text/html")
    cm.set("/feed.rss", feed("aws_all.rss"))
    config = _detect_config(tmp_path, sp=sp, io=io, fd=fd, cm=cm)

    def sources(monitor: RunningMonitor) -> dict[tuple[str, str], str]:
        found = httpx.get(monitor.base + "/stats").json()["feeds"]
        return {(f["name"], urlsplit(f["url"]).path): f["kind"] for f in found}

    expected = {
        ("sp", "/api/v2/incidents.json"): "statuspage-api", ("sp", "/api/v2/summary.json"): "statuspage-components",
        ("io", "/api/v2/incidents.json"): "incidentio-api", ("fd", "/history.atom"): "statuspage",
        ("cm", "/feed.rss"): "per-update",
    }
    with RunningMonitor(config) as monitor:
        monitor.wait_for(lambda: sources(monitor) == expected)
    reports = [r.getMessage() for r in caplog.records if " offers " in r.getMessage()]
    assert len(reports) == 4 and any(r.startswith("sp: ") and "offers statuspage-api" in r for r in reports)
    probes = {server: len(server.requests) for server in (sp, io, fd, cm)}
    with RunningMonitor(config) as monitor:  # remembered in the state file: polled, never probed again
        monitor.wait_for(lambda: sources(monitor) == expected
                         and httpx.get(monitor.base + "/stats").json()["polls_total"] >= len(expected))
    assert len(fd.requests_to("/")) == len(cm.requests_to("/")) == 1
    assert all(len(server.requests) > probes[server] for server in probes)


def test_a_page_with_nothing_found_fails_clearly_and_is_retried(tmp_path, pages):
    page = pages()
    page.set("/", "<html>a status page without feeds</html>", content_type="text/html")
    with RunningMonitor(_detect_config(tmp_path, none=page)) as monitor:
        monitor.wait_for(lambda: httpx.get(monitor.base + "/stats").json()["feeds"][0]["last_error"])
        error = httpx.get(monitor.base + "/stats").json()["feeds"][0]["last_error"]
        page.set("/history.rss", feed("statuspage_github_history.rss"))
        monitor.wait_for(lambda: httpx.get(monitor.base + "/stats").json()["feeds"][0]["kind"] == "statuspage", timeout=20)
    assert "no status API" in error and f"127.0.0.1:{page.port}" in error


def test_one_update_from_feed_api_and_webhook_is_printed_once(tmp_path, feeds):
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=30)
    blocks = [(start, "Investigating", "Errors on login")]
    incident = {"id": "both0001", "name": "Incident both0001", "status": "investigating", "incident_updates": []}

    def publish() -> None:
        incident["incident_updates"] = [
            {"id": f"upd{n}", "status": label.lower(), "body": text, "created_at": when.isoformat(),
             "display_at": when.isoformat()} for n, (when, label, text) in enumerate(blocks)][::-1]
        feeds.set("/page/history.rss", statuspage_rss("both0001", blocks))
        _serve_json(feeds, "/page/api/v2/incidents.json", {"incidents": [incident]})

    publish()
    _serve_json(feeds, "/page/api/v2/summary.json", _summary({}))
    config = replace(make_config(tmp_path, interval=0.3), feeds=(
        FeedConfig("Acme", feeds.url("/page/history.rss")), FeedConfig("Acme", feeds.url("/page"), "statuspage-api")))
    with RunningMonitor(config) as monitor:
        monitor.wait_for(lambda: httpx.get(monitor.base + "/stats").json()["polls_total"] >= 6)
        blocks.append((start + timedelta(minutes=20), "Identified", "Found the cause"))
        hook = {"incident": dict(incident, status="identified")}
        publish()
        hook["incident"]["incident_updates"] = incident["incident_updates"]
        # accepted, or a duplicate if a poll brought the update first: printed once either way
        assert httpx.post(monitor.base + "/webhook/generic/Acme", json=hook).json()["status"] in ("accepted", "duplicate")
        blocks.append((start + timedelta(minutes=25), "Resolved", "Fixed"))
        publish()
        monitor.wait_for(lambda: [e.status for e in monitor.output.events if e.title == "Incident both0001"][-1:] == ["Resolved"])
        time.sleep(1.5)  # every source has seen every update by now
        statuses = [e.status for e in monitor.output.events if e.title == "Incident both0001"]
    assert statuses == ["Investigating", "Identified", "Resolved"]


# --- filters ---

def _hook(incident: str, components: list[str]) -> dict:
    return {"event_type": "incident.updated", "data": {"id": incident, "incident": {
        "name": incident, "status": {"label": "Investigating"}, "message": "m", "components": components}}}


def test_component_and_impact_filters_apply_to_output_not_to_memory(tmp_path, feeds):
    incidents = {"incidents": [_open_incident(doc(GITHUB_INCIDENTS))]}
    incidents["incidents"][0]["impact"] = "minor"
    _serve_json(feeds, "/gh/api/v2/incidents.json", incidents)
    _serve_json(feeds, "/gh/api/v2/summary.json", _summary({}))
    base = make_config(tmp_path, interval=0.3)
    source = FeedConfig("GitHub", feeds.url("/gh"), "statuspage-api", components=("Actions*",), min_impact="major")
    with RunningMonitor(replace(base, feeds=(source,))) as monitor:
        monitor.wait_for(lambda: httpx.get(monitor.base + "/stats").json()["polls_total"] >= 2)
        for name, components in [("kept", ["Actions runners"]), ("dropped", ["Pages"]), ("unknown", [])]:
            httpx.post(f"{monitor.base}/webhook/generic/GitHub", json=_hook(name, components))
        time.sleep(0.5)
        resolved = _hook("kept", ["Pages"])
        resolved["data"]["incident"]["status"] = {"label": "Resolved"}
        httpx.post(f"{monitor.base}/webhook/generic/GitHub", json=resolved)  # filtered out, yet it closes "kept"
        time.sleep(0.5)
        stats = httpx.get(monitor.base + "/stats").json()
        shown = {e.title: e.note for e in monitor.output.events}
    assert set(shown) == {"kept", "unknown"}  # the minor incident, Pages and Pull Requests are not
    assert shown["kept"] == "states no impact, so the impact filter let it through"
    assert "names no component" in shown["unknown"]
    assert stats["filtered_total"] == 4  # with the summary's Pull Requests outage
    assert stats["open_incidents"] == {"GitHub": 1}  # "unknown"; "kept" was closed by its filtered update
    unfiltered = FeedConfig("GitHub", feeds.url("/gh"), "statuspage-api")
    with RunningMonitor(replace(base, feeds=(unfiltered,))) as monitor:
        monitor.wait_for(lambda: httpx.get(monitor.base + "/stats").json()["polls_total"] >= 4)
        assert monitor.output.events == []  # removing the filter replays nothing


def test_a_config_with_providers_and_filters_runs(tmp_path, feeds):
    """Catalogue providers with filters, beside a feed of one's own; the providers' sources
    are loopback copies named by a catalogue file of the user's (no test reaches the internet)."""
    feeds.set("/github.atom", feed("statuspage_github_history.atom"))
    feeds.set("/openai/api/v2/incidents.json", feed("incidentio_openai_incidents_subset.json"))
    feeds.set("/cloudflare.rss", feed("statuspage_claude_history.rss"))
    feeds.set("/internal.rss", feed("aws_all.rss"))
    catalogue = tmp_path / "providers.toml"
    catalogue.write_text("".join(
        f'[[provider]]\nid = "{ident}"\nname = "{name}"\npage = "{feeds.url("/")}"\nurl = "{feeds.url(path)}"\n'
        f'kind = "{kind}"\nchecked = 2026-11-30\n'
        for ident, name, path, kind in [
            ("github", "GitHub", "/github.atom", "statuspage"), ("openai", "OpenAI", "/openai", "incidentio-api"),
            ("cloudflare", "Cloudflare", "/cloudflare.rss", "statuspage"),
        ]
    ))
    config = tmp_path / "monitor.toml"
    config.write_text(
        'providers = ["github", {name = "openai", components = ["Chat*"], min_impact = "major", interval = 300}]\n'
        f'[[feeds]]\nname = "Internal"\nurl = "{feeds.url("/internal.rss")}"\ncomponents = ["API"]\n'
    )
    result = run_main("--config", str(config), "--catalogue", str(catalogue), "--once", "--watch", "cloudflare",
                      "--state", ":memory:", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr  # every source was read
    for path in ("/github.atom", "/openai/api/v2/incidents.json", "/cloudflare.rss", "/internal.rss"):
        assert feeds.requests_to(path), path
