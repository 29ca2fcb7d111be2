// The dashboard: provider cards from /api/providers, a timeline from /events, and new events
// live from /events/stream. Text only ever goes in through textContent (no HTML injection).
"use strict";

const MAX_EVENTS = 200;
const events = new Map(); // id -> event, newest kept
let lastId = 0;
let source = null;
let refreshTimer = null;

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function localTime(iso) {
  if (!iso) return null;
  const date = new Date(iso);
  return el("time", { dateTime: iso, textContent: date.toLocaleString(), title: iso });
}

function age(iso) {
  if (!iso) return "";
  const minutes = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 60000));
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} days`;
}

// Only http(s) links become links: the monitor drops any other scheme, and the page checks again.
function webUrl(url) {
  try {
    const parsed = new URL(url);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
  } catch (error) {
    return null;
  }
}

function link(url, text) {
  const href = url ? webUrl(url) : null;
  return href ? el("a", { href, textContent: text, rel: "noopener noreferrer", target: "_blank" }) : text;
}

function renderIncident(incident) {
  const box = el("div", { className: "incident" });
  box.append(el("p", {}, el("strong", { textContent: "Incident: " }), link(incident.url, incident.title)));
  box.append(el("p", { textContent: `Status: ${incident.status}` }));
  if (incident.since) {
    box.append(el("p", { className: "muted" }, `Open for ${age(incident.since)}, since `, localTime(incident.since)));
  }
  if (incident.message) box.append(el("p", { className: "muted", textContent: incident.message }));
  return box;
}

function renderHealth(src) {
  const failing = { className: "health", dataset: { failing: String(Boolean(src.failing)) } };
  if (src.consecutive_errors) {
    const text = src.failing
      ? `Source failing: ${src.last_error || "error"} (${src.consecutive_errors} errors in a row)`
      : `Last poll failed: ${src.last_error || "error"}`;
    const line = el("p", failing, text);
    if (src.last_success_at) line.append(" · last good poll ", localTime(src.last_success_at));
    return line;
  }
  if (!src.last_success_at) return el("p", failing, "Not polled yet in this run");
  return el("p", failing, "Source OK · last good poll ", localTime(src.last_success_at));
}

function stateText(provider) {
  const open = provider.incidents.length;
  if (open) return `⚠ ${open === 1 ? "Open incident" : `${open} open incidents`}: ${provider.incidents[0].status}`;
  if (provider.state === "unknown") return "? Unknown: its source is failing";
  return "✓ Operational";
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

function renderCard(provider) {
  const card = el("li", { className: "card", dataset: {
    state: provider.state, provider: provider.name, failing: String(provider.failing_sources > 0) } });
  card.append(el("h3", {}, link(provider.page_url, provider.name)));
  card.append(el("p", { className: "state", textContent: stateText(provider) }));
  if (provider.state === "incident" && provider.failing_sources) {
    // What is shown may be out of date: say so beside the incident, not only at the bottom.
    card.append(el("p", { className: "stale", textContent:
      `⚠ ${plural(provider.failing_sources, "source", "sources")} failing: this may be out of date` }));
  }
  for (const incident of provider.incidents) card.append(renderIncident(incident));
  if (provider.components.length) {
    card.append(el("p", { textContent: `Affected: ${provider.components.join(", ")}` }));
  }
  for (const src of provider.sources) card.append(renderHealth(src));
  if (!provider.sources.length) card.append(el("p", { className: "health", textContent: "Source: webhooks" }));
  return card;
}

function renderProviders(providers) {
  $("providers").replaceChildren(...providers.map(renderCard));
  // Failing sources lead: an open incident or "no incidents" says nothing about a provider
  // whose source cannot be read.
  const open = providers.filter((p) => p.state === "incident").length;
  const unknown = providers.filter((p) => p.state === "unknown").length;
  const failing = providers.reduce((n, p) => n + p.failing_sources, 0);
  const parts = [];
  if (failing) {
    const at = providers.filter((p) => p.failing_sources).length;
    parts.push(`⚠ ${plural(failing, "source", "sources")} failing at ${plural(at, "provider", "providers")}`);
  }
  if (open) parts.push(`${open} of ${providers.length} providers have an open incident`);
  else if (unknown === providers.length && unknown) parts.push("no provider could be read");
  else if (unknown) parts.push(`no open incidents at the ${providers.length - unknown} providers read`);
  else parts.push(`No open incidents at ${plural(providers.length, "provider", "providers")}`);
  const summary = $("summary");
  summary.textContent = parts.join(" · ");
  summary.dataset.failing = String(failing > 0);
  const select = $("filter");
  const known = new Set([...select.options].map((o) => o.value));
  for (const p of providers) if (!known.has(p.name)) select.append(el("option", { value: p.name, textContent: p.name }));
}

function renderEvent(event, fresh) {
  const item = el("li", { className: "event" + (fresh ? " fresh" : ""), dataset: { id: String(event.id), provider: event.provider } });
  item.append(el("header", {},
    el("span", { className: "status", textContent: event.status }),
    el("strong", { textContent: event.provider + (event.product ? ` · ${event.product}` : "") }),
    localTime(event.occurred_at || event.received_at)));
  item.append(el("p", {}, link(event.url, event.title)));
  if (event.message) item.append(el("p", { className: "muted", textContent: event.message }));
  return item;
}

function renderTimeline(freshId) {
  const filter = $("filter").value;
  const shown = [...events.values()]
    .filter((e) => !filter || e.provider.toLowerCase() === filter.toLowerCase())
    .sort((a, b) => b.id - a.id);
  $("timeline").replaceChildren(...shown.map((e) => renderEvent(e, e.id === freshId)));
  $("empty").hidden = shown.length > 0;
}

function remember(event) {
  events.set(event.id, event);
  lastId = Math.max(lastId, event.id);
  while (events.size > MAX_EVENTS) events.delete(Math.min(...events.keys()));
}

async function fetchJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (response.status === 401) location.assign("/login"); // an admin token is set, and this browser has no session
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function refreshProviders() {
  try {
    renderProviders((await fetchJson("/api/providers")).providers);
  } catch (error) {
    $("summary").textContent = "Cannot reach the monitor";
  }
}

function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshProviders, 100);
}

async function loadTimeline() {
  const filter = $("filter").value;
  const query = filter ? `?limit=100&provider=${encodeURIComponent(filter)}` : "?limit=100";
  for (const event of (await fetchJson(`/events${query}`)).events) remember(event);
  renderTimeline();
}

function setConnection(state, text) {
  const node = $("connection");
  node.dataset.state = state;
  node.textContent = text;
}

function connect() {
  source = new EventSource(`/events/stream?after=${lastId}`);
  source.onopen = () => {
    setConnection("live", "Live");
    refreshProviders();
  };
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (events.has(event.id)) return;
    remember(event);
    renderTimeline(event.id);
    refreshSoon();
  };
  source.onerror = () => {
    setConnection("connecting", "Reconnecting…");
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. an error answer while restarting): start again after the last event.
      setTimeout(connect, 1000);
    }
  };
}

async function start() {
  $("filter").addEventListener("change", () => loadTimeline().catch(() => {}));
  setInterval(refreshProviders, 30000); // ages and source health move without events
  await Promise.all([refreshProviders(), loadTimeline().catch(() => {})]);
  connect();
}

start();
