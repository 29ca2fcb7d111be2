"""Random headers and bodies against the three webhook endpoints of a running server:
whatever arrives, the answer is never a 5xx."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import httpx
import pytest
from conftest import RunningMonitor, fixture_bytes, make_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SECRET = "whsec_" + base64.b64encode(b"fuzzing-secret-0123456789").decode()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
# Plausible shapes with random leaves, so the adapters are reached, not only the JSON parser.
shapes = st.one_of(
    st.builds(lambda t, o: {"event_type": t, t: o},
              st.sampled_from(["public_incident.incident_created_v2", "public_incident.incident_status_updated_v2",
                               "private_incident.incident_updated_v2", "other"]), json_values),
    st.builds(lambda d, e: {"event_type": e, "data": d}, json_values, json_values),
    st.builds(lambda i: {"incident": i}, st.fixed_dictionaries({"id": st.text(max_size=8)}, optional={
        "incident_updates": json_values, "components": json_values, "name": json_values})),
    st.builds(lambda c, u: {"component": c, "component_update": u}, json_values, st.dictionaries(st.text(max_size=10), json_values)),
    json_values,
)
fixtures = st.sampled_from([
    "incidentio_openapi_example_public_incident__incident_created_v2.json",
    "statuspage_zulip_fixture_incident_update.json",
    "statuspage_public_go_test_component_update_2019.json",
])
bodies = st.one_of(
    st.binary(max_size=300),
    shapes.map(lambda v: json.dumps(v).encode()),
    st.tuples(fixtures, st.integers(0, 2000), st.binary(max_size=8)).map(
        lambda t: bytearray(fixture_bytes(f"webhooks/{t[0]}"))[: t[1]] + t[2]),
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
header_values = st.one_of(
    header_text,
    st.integers(-10**12, 10**13).map(str),
    st.lists(st.tuples(st.sampled_from(["v1", "v1a", "v2", ""]), st.binary(max_size=40)), max_size=3).map(
        lambda sigs: " ".join(f"{v},{base64.b64encode(b).decode()}" for v, b in sigs)),
).map(str.strip)  # h11 refuses to send surrounding white space
header_names = st.sampled_from([
    "webhook-id", "webhook-timestamp", "webhook-signature", "svix-id", "svix-timestamp", "svix-signature",
    "x-hub-signature-256", "x-github-delivery", "content-type",
])
headers = st.dictionaries(header_names, header_values, max_size=6)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    signed = make_config(tmp_path_factory.mktemp("signed"), incident_io_secret=SECRET,
                         webhook_secrets={"FUZZ": "plain-secret"})
    unsigned = make_config(tmp_path_factory.mktemp("unsigned"))
    with RunningMonitor(signed) as a, RunningMonitor(unsigned) as b:
        yield [a, b]


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=bodies, headers=headers, which=st.integers(0, 1))
def test_incident_io_never_5xx(servers, body, headers, which):
    answer = httpx.post(servers[which].base + "/webhook/incident-io", content=bytes(body), headers=headers)
    assert answer.status_code < 500, answer.text


@FUZZ
@given(body=bodies, headers=headers, which=st.integers(0, 1),
       provider=st.one_of(st.just("fuzz"), st.text(min_size=1, max_size=30)),
       token=st.one_of(st.none(), header_text))
def test_generic_never_5xx(servers, body, headers, which, provider, token):
    url = servers[which].base + "/webhook/generic/" + quote(provider, safe="")
    params = {"token": token} if token is not None else None
    answer = httpx.post(url, content=bytes(body), headers=headers, params=params)
    assert answer.status_code < 500, answer.text


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["provider", "source", "since", "limit", "x"]), header_text, max_size=4))
def test_events_listing_never_5xx(servers, params):
    answer = httpx.get(servers[0].base + "/events", params=params)
    assert answer.status_code in (200, 422), answer.text
