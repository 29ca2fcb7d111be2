"""Issue 16: the provider catalogue (every entry as the evidence says, 100+ of them, each with
the date of its evidence), the platforms its entries use (status.io feeds, Better Stack and
Instatus JSON, parsed from real captures), detection from any page URL, and
`--check-providers` / `--catalogue` against loopback copies of each platform."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import replace
from datetime import date, datetime, timezone
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import FIXTURES, RunningMonitor, feed, make_config, run_main
from feedserver import FeedServer

from status_monitor.config import FeedConfig
from status_monitor.sources.catalogue import CatalogueError, load_catalogue, merged_catalogue
from status_monitor.sources.detect import api_kind, names_a_feed, poll_targets
from status_monitor.sources.kinds import parse_feed, parse_source
from status_monitor.sources.readers import FeedError

STATUSIO_CLOSED = "statusio_docker_history_2026-06-24.rss"
STATUSIO_OPEN = "statusio_docker_history_2026-04-21_open.rss"
BETTERSTACK = "betterstack_huggingface_index_2026-07-19_trimmed.json"
INSTATUS = "instatus_perplexity_summary_2026-07-23_major.json"

# A real capture of each kind the catalogue uses ("feed": any feed family, recognised).
KIND_FIXTURES = {
    "statuspage-api": "statuspage_github_incidents.json",
    "incidentio-api": "incidentio_openai_incidents_subset.json",
    "google-cloud-api": "gcp_incidents.json",
    "slack-api": "slack_history.json",
    "betterstack-api": BETTERSTACK,
    "instatus-api": INSTATUS,
    "statusio": STATUSIO_CLOSED,
    "per-update": "aws_all.rss",
    "feed": "azure_status_feed_2026-07-23_incident.rss",
}


def parse(name: str, kind: str | None, url: str = "https://page.example/feed", provider: str = "P"):
    return parse_source(feed(name), provider, url, kind)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


# --- status.io feeds: one item per incident, every update a block, oldest first ---

def test_statusio_feed_blocks_are_updates_in_utc_oldest_first():
    parsed = parse(STATUSIO_CLOSED, None)
    assert parsed.kind == "statusio" and len(parsed.incidents) == 2
    incident, maintenance = parsed.incidents
    assert incident.incident_id == "6a216c468614df05b0372d0d" and incident.open is False
    assert [(u.status, u.message, u.occurred_at) for u in incident.updates] == [
        ("Investigating", "We are aware of the issue and investigating", utc("2026-06-04T12:15")),
        ("Resolved", "The issue is now resolved", utc("2026-06-04T13:43")),  # 06:43 PDT; the item's pubDate
    ]
    assert incident.updates[0].title == "Customers are experiencing Image push webhooks not firing as expected"
    assert [u.status for u in maintenance.updates] == ["Active", "Completed"] and maintenance.open is False
    still_open = parse(STATUSIO_OPEN, None).incidents[0]
    assert still_open.open and [u.status for u in still_open.updates] == ["Investigating", "Monitoring"]


def test_statusio_new_block_keeps_the_earlier_keys_and_both_readers_agree():
    body = feed(STATUSIO_OPEN)
    grown = body.replace(b"improving.<br /><br />]]>",
                         b"improving.<br /><br /><small>April 20, 2026 03:10 PDT</small><br /><b>Resolved</b>"
                         b" - Fixed.<br /><br />]]>")
    before = parse_feed(body, "Docker", "https://x.test/rss").incidents[0].updates
    after = parse_feed(grown, "Docker", "https://x.test/rss").incidents[0].updates
    assert [u.key for u in after[:2]] == [u.key for u in before] and len({u.key for u in after}) == 3
    assert after[-1].status == "Resolved" and after[-1].occurred_at == utc("2026-04-20T10:10")
    for name in (STATUSIO_CLOSED, STATUSIO_OPEN):
        fast, tolerant = (parse_feed(feed(name), "P", "https://x.test/rss", reader=r) for r in ("fast", "feedparser"))
        assert [dataclasses.asdict(i) for i in fast.incidents] == [dataclasses.asdict(i) for i in tolerant.incidents]


# --- Better Stack index.json: reports and their status updates, each with an id ---

def test_betterstack_reports_are_incidents_with_every_update():
    parsed = parse(BETTERSTACK, "betterstack-api", "https://status.huggingface.co/index.json", "Hugging Face")
    assert parsed.title == "Hugging Face"
    by_id = {i.incident_id: i for i in parsed.incidents}
    assert list(by_id) == ["919822", "939240", "946090", "965809", "961899"]
    outage = by_id["965809"]
    assert [(u.status, u.impact, u.occurred_at) for u in outage.updates] == [  # oldest first, whatever the order given
        ("Downtime", "major", utc("2026-07-16T08:30")), ("Degraded", "minor", utc("2026-07-16T08:43")),
        ("Resolved", None, utc("2026-07-16T10:07"))]
    assert outage.updates[0].components == ["Huggingface Hub", "Git Hosting and Serving", "Inference Endpoints UI"]
    assert outage.updates[0].title == "Hub unavailable" and outage.open is False
    assert outage.updates[0].url == "https://status.huggingface.co/incident/965809"
    assert [u.status for u in by_id["946090"].updates] == ["Maintenance", "Completed"]  # a maintenance that is over
    assert by_id["961899"].open and by_id["961899"].updates[0].status == "Maintenance"  # scheduled, not over
    keys = [u.key for i in parsed.incidents for u in i.updates]
    assert len(keys) == len(set(keys)) == 10 and keys[0] == "betterstack-update:5218738"


def test_instatus_summary_gives_each_open_incident_once_per_state():
    [incident] = parse(INSTATUS, "instatus-api", "https://status.perplexity.com/summary.json").incidents
    [update] = incident.updates
    assert (incident.incident_id, incident.open) == ("cmrxt1rlu000f0zlcv4dzmdlr", True)
    assert (update.status, update.impact, update.title) == ("Monitoring", "critical", "Computer sandbox issues")
    assert update.url == "https://status.perplexity.com/cmrxt1rlu000f0zlcv4dzmdlr" and update.snapshot
    later = json.loads(feed(INSTATUS))
    later["activeIncidents"][0].update(status="RESOLVED", updatedAt="2026-07-23T18:30:00.000Z")
    [resolved] = parse_source(json.dumps(later).encode(), "P", "u", "instatus-api").incidents
    assert resolved.updates[0].status == "Resolved" and not resolved.open and resolved.updates[0].key != update.key


@pytest.mark.parametrize("kind,body", [
    ("betterstack-api", {"page": {"name": "x"}}), ("betterstack-api", {"data": {"type": "status_page"}}),
    ("instatus-api", {"page": {"status": {"indicator": "none"}}}), ("instatus-api", []),
])
def test_platform_json_of_another_shape_is_an_error(kind, body):
    with pytest.raises(FeedError):
        parse_source(json.dumps(body).encode(), "P", "u", kind)


def test_statuscast_posts_group_into_their_incident():
    """No StatusCast capture exists in public repositories (tests/fixtures/SOURCES.md); this
    document is built here from the guid form Infrawrench's Fastly plugin documents."""
    items = "".join(
        f"<item><title>Elevated errors</title><description>{text}</description><guid isPermaLink='false'>{guid}"
        f"</guid><pubDate>{when}</pubDate><link>https://www.fastlystatus.com/incident/378892</link></item>"
        for guid, text, when in [("/378892/817470", "Resolved: fixed.", "Wed, 19 Aug 2026 11:00:00 GMT"),
                                 ("/378892/817466", "Investigating.", "Wed, 19 Aug 2026 10:00:00 GMT"),
                                 ("/378801/817001", "Completed.", "Tue, 18 Aug 2026 10:00:00 GMT")])
    parsed = parse_feed(f"<rss version='2.0'><channel><title>Fastly</title>{items}</channel></rss>".encode(),
                        "Fastly", "https://www.fastlystatus.com/rss/")
    assert parsed.kind == "per-update"
    assert {i.incident_id: [u.message for u in i.updates] for i in parsed.incidents} == {
        "378892": ["Investigating.", "Resolved: fixed."], "378801": ["Completed."]}


def test_which_addresses_are_detected_and_what_the_platform_documents_name():
    assert api_kind(json.loads(feed(BETTERSTACK))) == "betterstack-api"
    assert api_kind(json.loads(feed(INSTATUS))) == "instatus-api"
    assert api_kind(json.loads(feed("statuspage_github_summary_2026-07-24_major.json"))) == "statuspage-api"
    for url in ("https://x.example/history.atom", "https://x.example/pages/5b36dc6502d06804c08349f7/rss",
                "https://feeds.feedburner.com/OktaTrustRSS", "https://azure.status.microsoft/en-us/status/feed/",
                "https://status.x.ai/feed.xml"):
        assert names_a_feed(url), url
    for url in ("https://x.example", "https://www.issquareup.com/united-states", "https://x.example/api/v2/summary.json"):
        assert not names_a_feed(url) and poll_targets(FeedConfig("X", url))[0].kind == "detect", url
    assert poll_targets(FeedConfig("X", "https://x.example/", "betterstack-api"))[0].url == "https://x.example/index.json"
    assert poll_targets(FeedConfig("X", "https://x.example", "instatus-api"))[0].url == "https://x.example/summary.json"


# --- the catalogue ---

def test_catalogue_has_100_entries_each_dated_and_every_fix_of_the_evidence():
    catalogue = load_catalogue()
    assert len(catalogue) >= 100
    assert all(date(2024, 1, 1) <= p.checked <= date(2026, 12, 31) for p in catalogue.values())
    assert "sendgrid" not in catalogue and "pagerduty" not in catalogue  # no page, no readable source
    expected = {
        "fastly": ("https://www.fastlystatus.com", "per-update", "https://www.fastlystatus.com/rss/"),
        "docker": ("https://www.dockerstatus.com", "incidentio-api", None),
        "intercom": ("https://www.finstatus.com", "incidentio-api", None),
        "square": ("https://www.issquareup.com", "incidentio-api", None),
        "zoom": ("https://www.zoomstatus.com", "statuspage-api", None),
        "stripe": ("https://status.stripe.com", "statuspage-api", "https://www.stripestatus.com"),
        "gitlab": ("https://status.gitlab.com", "statusio", "https://status.gitlab.com/pages/5b36dc6502d06804c08349f7/rss"),
        "okta": ("https://status.okta.com", None, "https://feeds.feedburner.com/OktaTrustRSS"),
        "hugging-face": ("https://status.huggingface.co", "betterstack-api", "https://status.huggingface.co/index.json"),
        "plaid": ("https://status.plaid.com", "statuspage-api", None),
        "cohere": ("https://status.cohere.com", "incidentio-api", None),
        "render": ("https://status.render.com", "statuspage-api", None),
        "perplexity": ("https://status.perplexity.com", "instatus-api", "https://status.perplexity.com/summary.json"),
    }
    assert {i: (catalogue[i].page, catalogue[i].kind, catalogue[i].url) for i in expected} == expected
    assert catalogue["docker"].checked == date(2026, 8, 17) and catalogue["hashicorp"].checked == date(2026, 10, 4)
    for provider in catalogue.values():
        if provider.kind in ("betterstack-api", "instatus-api", "statusio"):
            assert provider.url and urlsplit(provider.url).netloc == urlsplit(provider.page).netloc, provider


def test_every_kind_the_catalogue_uses_has_a_real_capture_that_reads_as_that_kind():
    provenance = (FIXTURES / "SOURCES.md").read_text()
    used = {p.kind or "feed" for p in load_catalogue().values()}
    assert used <= set(KIND_FIXTURES), used - set(KIND_FIXTURES)
    for kind in used:
        name = KIND_FIXTURES[kind]
        assert f"`{name}`" in provenance
        parsed = parse_source(feed(name), "P", "https://page.example/doc", None if kind == "feed" else kind)
        assert parsed.incidents and all(i.updates for i in parsed.incidents), kind
        if kind in ("statusio", "per-update"):
            assert parse_feed(feed(name), "P", "https://page.example/doc").kind == kind  # recognised unprompted


def test_every_fixture_has_its_provenance_recorded():
    provenance = (FIXTURES / "SOURCES.md").read_text()
    listed = set(re.findall(r"^\| `([^`]+)`", provenance, re.M))
    on_disk = {p.name for p in FIXTURES.glob("*/*")}
    assert on_disk == listed


def test_list_providers_shows_the_date_of_each_entrys_evidence(tmp_path):
    listed = run_main("--list-providers", cwd=tmp_path)
    rows = listed.stdout.splitlines()
    assert listed.returncode == 0 and rows[0].split() == ["ID", "NAME", "PAGE", "CHECKED", "SOURCE"]
    fastly = next(r for r in rows if r.startswith("fastly "))
    assert fastly.split()[-3:] == ["2026-10-01", "per-update", "https://www.fastlystatus.com/rss/"]
    assert len(rows) == len(load_catalogue()) + 1


def _entry(id_: str, page: str, kind: str | None = None, url: str | None = None, name: str | None = None) -> str:
    lines = ["[[provider]]", f'id = "{id_}"', f'name = "{name or id_.title()}"', f'page = "{page}"']
    lines += [f'kind = "{kind}"'] * bool(kind) + [f'url = "{url}"'] * bool(url) + ["checked = 2026-11-30", ""]
    return "\n".join(lines)


def test_a_users_catalogue_is_added_and_wins_and_a_broken_one_is_refused(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text(_entry("github", "https://ghe-status.example", "statuspage-api", name="GitHub")
                    + _entry("acme", "https://status.acme.example"))
    merged = merged_catalogue(mine)
    assert merged["github"].page == "https://ghe-status.example" and merged["acme"].kind is None
    assert len(merged) == len(load_catalogue()) + 1 and list(merged)[-1] == "acme"
    listed = run_main("--catalogue", str(mine), "--list-providers", cwd=tmp_path)
    assert "https://ghe-status.example" in listed.stdout and "https://www.githubstatus.com" not in listed.stdout
    mine.write_text(_entry("acme", "https://status.acme.example").replace("checked = 2026-11-30\n", ""))
    with pytest.raises(CatalogueError, match=r"provider #1 \('acme'\): checked: field required"):
        merged_catalogue(mine)
    refused = run_main("--catalogue", str(mine), "--watch", "acme", "--once", cwd=tmp_path)
    assert refused.returncode == 2 and "mine.toml: provider #1 ('acme'): checked: field required" in refused.stderr
    missing = run_main("--catalogue", str(tmp_path / "nope.toml"), "--list-providers", cwd=tmp_path)
    assert missing.returncode == 2 and "nope.toml" in missing.stderr and "Traceback" not in missing.stderr


# --- detection from any page a person would paste (real monitor, loopback pages) ---

@pytest.fixture
def pages(servers):
    return lambda: servers(FeedServer)


def _sources(monitor: RunningMonitor) -> dict[str, tuple[str, str, str | None]]:
    return {f["name"]: (f["kind"], urlsplit(f["url"]).path, f["moved_to"])
            for f in httpx.get(monitor.base + "/stats").json()["feeds"]}


def _html(links: str = "") -> str:
    return f"<!doctype html><html><head><title>Status</title>{links}</head><body>All good</body></html>"


def test_page_urls_with_paths_html_pages_and_platform_json_are_detected(tmp_path, pages):
    region, linked, better, instatus, statusio = pages(), pages(), pages(), pages(), pages()
    # an incident.io page's regional sub-page: its API is at the host's root
    region.set("/united-states", _html(), content_type="text/html")
    region.set("/api/v2/summary.json", feed("incidentio_openai_summary_2026-07-22_minor.json"), content_type="application/json")
    # a page with a path whose HTML names its feed (on a status.io page)
    linked.set("/status/page", _html('<link rel="alternate" type="application/rss+xml" href="/pages/5b36/rss">'),
               content_type="text/html")
    linked.set("/pages/5b36/rss", feed(STATUSIO_OPEN))
    # Better Stack: every path answers the page's HTML, but /index.json is the platform's JSON
    better.set("*", _html(), content_type="text/html")
    better.set("/index.json", feed(BETTERSTACK), content_type="application/json")
    # Instatus answers Statuspage's summary address in its own shape
    instatus.set("/api/v2/summary.json", feed(INSTATUS), content_type="application/json")
    statusio.set("/", _html(), content_type="text/html")
    statusio.set("/history.rss", feed(STATUSIO_CLOSED))
    config = replace(make_config(tmp_path, interval=0.3), feeds=(
        FeedConfig("region", region.url("/united-states")), FeedConfig("linked", linked.url("/status/page")),
        FeedConfig("better", better.url("/")), FeedConfig("instatus", instatus.url("")),
        FeedConfig("statusio", statusio.url("")),
    ))
    expected = {
        "region": ("incidentio-api", "/api/v2/incidents.json", None), "linked": ("statusio", "/pages/5b36/rss", None),
        "better": ("betterstack-api", "/index.json", None), "instatus": ("instatus-api", "/api/v2/summary.json", None),
        "statusio": ("statusio", "/history.rss", None),
    }
    with RunningMonitor(config) as monitor:
        monitor.wait_for(lambda: _sources(monitor) == expected)
        monitor.wait_for(lambda: {e.provider for e in monitor.output.events} >= {"linked", "better", "instatus"})
    shown = {(e.provider, e.status) for e in monitor.output.events}
    assert {("linked", "Monitoring"), ("instatus", "Monitoring"), ("better", "Maintenance")} <= shown


def test_a_catch_all_site_is_no_feed_found(tmp_path, pages):
    site = pages()
    site.set("*", _html(), content_type="text/html")
    with RunningMonitor(replace(make_config(tmp_path, interval=0.3), feeds=(FeedConfig("site", site.url("/")),))) as monitor:
        monitor.wait_for(lambda: httpx.get(monitor.base + "/stats").json()["feeds"][0]["last_error"])
        feeds = httpx.get(monitor.base + "/stats").json()["feeds"]
    assert "every path answers with the same HTML page" in feeds[0]["last_error"] and feeds[0]["kind"] == "detect"
    assert monitor.output.events == []


def test_a_page_that_moved_to_another_host_is_followed_and_reported(tmp_path, pages, caplog):
    caplog.set_level(logging.INFO)
    old, new, feed_old, feed_new = pages(), pages(), pages(), pages()
    old.set("/", b"", status=301, headers={"Location": new.url("/")})
    new.set("/", _html(), content_type="text/html")
    new.set("/api/v2/summary.json", feed("statuspage_github_summary_2026-07-24_major.json"), content_type="application/json")
    new.set("/api/v2/incidents.json", feed("statuspage_github_incidents.json"), content_type="application/json")
    feed_old.set("/history.rss", b"", status=302, headers={"Location": feed_new.url("/history.rss")})
    feed_new.set("/history.rss", feed("statuspage_github_history.rss"))
    config = replace(make_config(tmp_path, interval=0.3), feeds=(
        FeedConfig("Moved", old.url("")), FeedConfig("MovedFeed", feed_old.url("/history.rss"))))
    with RunningMonitor(config) as monitor:
        monitor.wait_for(lambda: {f["name"]: f["moved_to"] for f in httpx.get(monitor.base + "/stats").json()["feeds"]}
                         == {"Moved": new.url("/"), "MovedFeed": feed_new.url("/history.rss")})
        feeds = httpx.get(monitor.base + "/stats").json()["feeds"]
    assert {f["url"] for f in feeds if f["name"] == "Moved"} == {new.url("/api/v2/incidents.json"),
                                                                   new.url("/api/v2/summary.json")}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "redirects to" in r.getMessage()]
    assert any(w.startswith(f"Moved: {old.url('')} redirects to {new.url('/')}") for w in warnings)
    assert sum(f"feed MovedFeed ({feed_old.url('/history.rss')}) redirects to" in w for w in warnings) == 1  # once


# --- --check-providers against loopback copies of each platform ---

def _platforms(servers) -> dict[str, str]:
    """One loopback server per platform, serving its real capture; returns catalogue entries."""
    def server(routes: dict[str, tuple[bytes | str, str]]) -> FeedServer:
        page = servers(FeedServer)
        for path, (body, content_type) in routes.items():
            page.set(path, body, content_type=content_type)
        return page

    js, xml, html = "application/json", "application/xml", "text/html"
    sp = server({"/api/v2/incidents.json": (feed("statuspage_github_incidents.json"), js),
                 "/api/v2/summary.json": (feed("statuspage_github_summary_2026-07-24_major.json"), js)})
    io = server({"/api/v2/incidents.json": (feed("incidentio_openai_incidents_subset.json"), js),
                 "/api/v2/summary.json": (feed("incidentio_openai_summary_2026-07-22_minor.json"), js)})
    docs = server({"/gcp.json": (feed("gcp_incidents.json"), js), "/slack.json": (feed("slack_history.json"), js),
                   "/index.json": (feed(BETTERSTACK), js), "/summary.json": (feed(INSTATUS), js),
                   "/pages/x/rss": (feed(STATUSIO_CLOSED), xml), "/rss/all.rss": (feed("aws_all.rss"), xml),
                   "/history.atom": (feed("statuspage_claude_history.atom"), xml)})
    page = server({"/": (_html('<link rel="alternate" type="application/atom+xml" href="/history.atom">'), html),
                   "/history.atom": (feed("incidentio_openai_history_2026-08-31_first8.atom"), xml)})
    target = server({"/api/v2/incidents.json": (feed("statuspage_github_incidents.json"), js),
                     "/api/v2/summary.json": (feed("statuspage_github_summary_2026-07-24_major.json"), js)})
    moved = servers(FeedServer)
    moved.set("/api/v2/incidents.json", b"", status=301, headers={"Location": target.url("/api/v2/incidents.json")})
    gone = servers(FeedServer)
    gone.close()
    return {
        "sp": _entry("sp", sp.url(""), "statuspage-api"),
        "io": _entry("io", io.url(""), "incidentio-api"),
        "gcp": _entry("gcp", docs.url("/g"), "google-cloud-api", docs.url("/gcp.json")),
        "slack": _entry("slack", docs.url("/s"), "slack-api", docs.url("/slack.json")),
        "better": _entry("better", docs.url("/b"), "betterstack-api", docs.url("/index.json")),
        "instatus": _entry("instatus", docs.url("/i"), "instatus-api", docs.url("/summary.json")),
        "statusio": _entry("statusio", docs.url("/p"), "statusio", docs.url("/pages/x/rss")),
        "aws": _entry("aws", docs.url("/a"), "per-update", docs.url("/rss/all.rss")),
        "feed": _entry("feed", docs.url("/f"), None, docs.url("/history.atom")),
        "page": _entry("page", page.url("")),
        "moved": _entry("moved", moved.url(""), "statuspage-api"),
        "mismatch": _entry("mismatch", io.url("/"), "statuspage-api"),
        "wrongdoc": _entry("wrongdoc", docs.url("/w"), "slack-api", docs.url("/gcp.json")),
        "gone": _entry("gone", gone.url(""), "statuspage-api"),
    }


def _check(tmp_path, entries: dict[str, str], *ids: str):
    mine = tmp_path / "loopback.toml"
    mine.write_text("".join(entries.values()))
    result = run_main("--catalogue", str(mine), "--check-providers", *ids, cwd=tmp_path)
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    return result, rows


def test_check_providers_reads_each_platform_and_says_ok(tmp_path, servers):
    entries = _platforms(servers)
    ok = ("sp", "io", "gcp", "slack", "better", "instatus", "statusio", "aws", "feed", "page")
    result, rows = _check(tmp_path, entries, *ok)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].split() == ["ID", "EXPECTED", "FOUND", "URL", "HTTP", "INCIDENTS", "NEWEST", "RESULT"]
    assert list(rows) == list(ok)  # in the order asked
    fields = {i: row.split() for i, row in rows.items()}
    assert fields["sp"][1:3] == ["statuspage-api", "statuspage-api"] and fields["sp"][4:] == ["200", "5", "2026-08-18", "OK"]
    assert fields["io"][1:3] == ["incidentio-api", "incidentio-api"] and fields["io"][5] == "17"
    assert fields["better"][5:] == ["5", "2026-07-22", "OK"] and fields["instatus"][5:] == ["1", "2026-07-23", "OK"]
    assert fields["statusio"][1:3] == ["statusio", "statusio"] and fields["aws"][2] == "per-update"
    assert fields["feed"][1:3] == ["feed", "statuspage"]
    assert fields["page"][1:3] == ["detected", "incidentio"] and fields["page"][3].endswith("/history.atom")
    assert fields["page"][-1] == "OK"
    assert "10 of 10 OK" in result.stderr


def test_check_providers_says_moved_mismatch_and_unreachable_and_fails(tmp_path, servers):
    entries = _platforms(servers)
    result, rows = _check(tmp_path, entries, "moved", "mismatch", "wrongdoc", "gone", "sp")
    assert result.returncode == 1
    verdicts = {i: re.search(r"\b(OK|MOVED|MISMATCH|UNREACHABLE)\b", row)[1] for i, row in rows.items()}
    assert verdicts == {"moved": "MOVED", "mismatch": "MISMATCH", "wrongdoc": "MISMATCH", "gone": "UNREACHABLE", "sp": "OK"}
    assert "redirects to http://127.0.0.1:" in rows["moved"] and "/api/v2/incidents.json  200  5" in rows["moved"]
    assert rows["mismatch"].split()[1:3] == ["statuspage-api", "incidentio-api"]
    assert "the document is google-cloud-api, not slack-api" in rows["wrongdoc"]
    assert "1 of 5 OK" in result.stderr
    unknown = run_main("--check-providers", "nosuchprovider", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown provider 'nosuchprovider'" in unknown.stderr
