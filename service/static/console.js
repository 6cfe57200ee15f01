// The acceptd operator console: overview charts, workers, requests, failures and webhooks.
// Plain browser JavaScript, no build step, charts in plain SVG. Data is inserted with
// textContent (never innerHTML), so nothing the API returns can become markup. With API keys,
// the console asks for one and keeps it in sessionStorage (this tab only).
import {AcceptdClient, AcceptdError} from "./acceptd-client.js";

const $ = (id) => document.getElementById(id);
const KEY_ITEM = "acceptd.console.key";
const REFRESH_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";

let client = new AcceptdClient({apiKey: sessionStorage.getItem(KEY_ITEM)});
let session = null; // {client, admin, clients}
let timer = null;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "class") node.className = v;
    else node[k] = v;
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  for (const child of children) node.append(child);
  return node;
}

function errorText(e) {
  if (e instanceof AcceptdError) {
    const p = e.problem || {};
    return p.detail || p.title || "HTTP " + e.status;
  }
  return "Network error: " + e.message;
}

const fmtTime = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");
const ago = (ms) => Math.max(0, Math.round((Date.now() - ms) / 1000)) + " s ago";
const ms = (v) => (v === null || v === undefined ? "–" : v < 1000 ? Math.round(v) + " ms" : (v / 1000).toFixed(2) + " s");

function requestLink(id) {
  return el("a", {href: "#request/" + id}, el("code", {}, id));
}

// -- session and key ----------------------------------------------------------------------

function askForKey(message) {
  $("key-form").hidden = false;
  $("key-msg").textContent = message || "";
  $("key").focus();
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY_ITEM, $("key").value.trim());
  client = new AcceptdClient({apiKey: $("key").value.trim()});
  $("key").value = "";
  session = null;
  route();
});

async function ensureSession() {
  if (session) return session;
  session = await client.json("/v1/whoami");
  $("key-form").hidden = true;
  $("whoami").textContent = session.admin
    ? `operator ${session.client}: every client's requests and endpoints`
    : `client ${session.client}: your own requests and endpoints`;
  $("f-client-label").hidden = !session.admin;
  const sel = $("f-client");
  if (session.admin && sel.options.length === 1) {
    for (const name of session.clients) sel.append(el("option", {value: name}, name));
  }
  return session;
}

// The listing's ?client= for an operator (every client unless one is picked).
function clientParam() {
  return session && session.admin ? "&client=" + encodeURIComponent($("f-client").value) : "";
}

// -- overview -----------------------------------------------------------------------------

function chart(title, times, series, cls) {
  const W = 600, H = 150, L = 34, B = 18, T = 6;
  const values = series.flatMap((s) => s.values.filter((v) => v !== null));
  const max = Math.max(1, ...values);
  const x = (i) => L + ((W - L - 4) * i) / Math.max(1, times.length - 1);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const body = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img"});
  body.append(svg("line", {class: "axis", x1: L, y1: H - B, x2: W, y2: H - B}));
  body.append(svg("line", {class: "axis", x1: L, y1: T, x2: L, y2: H - B}));
  const label = (tx, ty, text, anchor = "start") => {
    const t = svg("text", {x: tx, y: ty, "text-anchor": anchor});
    t.textContent = text;
    body.append(t);
  };
  label(L - 4, T + 8, String(max), "end");
  label(L - 4, H - B, "0", "end");
  if (times.length) {
    label(L, H - 4, new Date(times[0] * 1000).toLocaleTimeString());
    label(W - 2, H - 4, new Date(times[times.length - 1] * 1000).toLocaleTimeString(), "end");
  }
  const summary = [];
  for (const s of series) {
    const pts = [];
    s.values.forEach((v, i) => { if (v !== null) pts.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`); });
    const line = svg("polyline", {points: pts.join(" "), fill: "none", stroke: s.color, "stroke-width": 1.5,
      "data-series": s.name});
    body.append(line);
    summary.push(`${s.name} ${s.total ?? ""}`.trim());
  }
  body.setAttribute("aria-label", `${title}: ${summary.join(", ")}`);
  const legend = el("div", {class: "legend"}, ...series.map((s) => el("span", {class: "s-" + s.key}, s.name)));
  return el("div", {class: "chart " + cls}, el("h3", {}, title), body, legend);
}

async function overview() {
  const win = $("window").value;
  const [stats, hist] = await Promise.all([client.json("/v1/queue"), client.json("/v1/queue/history?window=" + win)]);
  const byOp = new Map(hist.operations.map((o) => [o.operation, o]));
  const rows = stats.operations.map((s) => {
    const h = byOp.get(s.operation);
    const done = h.totals.succeeded + h.totals.failed;
    const rate = done ? ((100 * h.totals.failed) / done).toFixed(1) + " %" : "–";
    return el("tr", {dataset: {operation: s.operation}},
      el("td", {}, el("code", {}, s.operation)), el("td", {}, String(s.queued)), el("td", {}, String(s.running)),
      el("td", {}, String(s.workers)), el("td", {}, String(s.throughput_per_second)), el("td", {}, rate),
      el("td", {}, `${ms(h.wait_ms.p50)} / ${ms(h.wait_ms.p95)}`), el("td", {}, `${ms(h.run_ms.p50)} / ${ms(h.run_ms.p95)}`));
  });
  $("ops-rows").replaceChildren(...rows);
  const unit = hist.step_seconds === 1 ? "per second" : "per minute";
  const charts = [];
  for (const h of hist.operations) {
    if (!h.totals.submitted && !h.totals.succeeded && !h.totals.failed && !h.queue_depth.some((v) => v)) continue;
    const c = chart(`${h.operation}: requests ${unit}`, h.time, [
      {key: "submitted", name: "submitted", color: "#0969da", values: h.submitted, total: h.totals.submitted},
      {key: "succeeded", name: "succeeded", color: "#1a7f37", values: h.succeeded, total: h.totals.succeeded},
      {key: "failed", name: "failed", color: "#cf222e", values: h.failed, total: h.totals.failed},
    ], "throughput");
    c.dataset.operation = h.operation;
    // What a person checks first: did anything happen in the last minute?
    const lastMinute = Math.max(1, Math.round(60 / hist.step_seconds));
    c.dataset.lastMinute = String(h.submitted.slice(-lastMinute).reduce((a, b) => a + b, 0));
    charts.push(c);
    const d = chart(`${h.operation}: queue depth`, h.time,
      [{key: "depth", name: "queued", color: "#9a6700", values: h.queue_depth}], "depth");
    d.dataset.operation = h.operation;
    charts.push(d);
  }
  $("charts").replaceChildren(...(charts.length ? charts : [el("p", {class: "muted"}, "No traffic in this window.")]));
}
$("window").addEventListener("change", () => route());

// -- workers ------------------------------------------------------------------------------

async function workers() {
  const {items} = await client.json("/v1/queue/workers");
  $("workers-empty").hidden = items.length > 0;
  $("worker-rows").replaceChildren(...items.map((w) => {
    const running = el("ul", {class: "plain"}, ...(w.running || []).map((r) =>
      el("li", {}, requestLink(r.id), ` ${r.operation}, ${r.age_seconds.toFixed(1)} s`)));
    if (w.kind === "dispatcher") running.append(el("li", {}, `${w.sending} deliveries in flight`));
    return el("tr", {dataset: {kind: w.kind, pid: String(w.pid)}},
      el("td", {}, w.kind), el("td", {}, w.host), el("td", {}, String(w.pid)),
      el("td", {}, (w.operations || []).join(", ")), el("td", {}, String(w.concurrency)), el("td", {}, running),
      el("td", {class: w.alive ? "ok" : "bad"}, (w.alive ? "" : "silent, ") + ago(w.heartbeat)));
  }));
}

// -- requests -----------------------------------------------------------------------------

let opsListed = false;
async function listOperations() {
  if (opsListed) return;
  const ops = await client.operations();
  $("f-op").append(...ops.map((o) => el("option", {value: o.name}, o.name)));
  opsListed = true;
}

async function requests() {
  await listOperations();
  const q = new URLSearchParams({limit: "50"});
  if ($("f-status").value) q.set("status", $("f-status").value);
  if ($("f-op").value) q.set("operation", $("f-op").value);
  const {items} = await client.json("/v1/queue/requests?" + q + clientParam());
  $("request-rows").replaceChildren(...items.map((r) => el("tr", {dataset: {id: r.id}},
    el("td", {}, requestLink(r.id)), el("td", {}, r.client || session.client), el("td", {}, r.operation),
    el("td", {class: "status-" + r.status}, r.status), el("td", {}, fmtTime(r.created_at)),
    el("td", {}, r.error ? r.error.title || r.error.type : ""))));
}
for (const id of ["f-status", "f-op", "f-client"]) $(id).addEventListener("change", () => route());

async function requestPage(id) {
  const r = await client.json("/v1/queue/requests/" + encodeURIComponent(id));
  $("r-id").textContent = r.id;
  $("r-cancel").disabled = !["queued", "running"].includes(r.status);
  $("r-retry").disabled = !["failed", "canceled"].includes(r.status);
  const facts = [["operation", r.operation], ["client", r.client || session.client], ["status", r.status],
    ["attempt", String(r.attempt)], ["lost runs", String(r.lost ?? 0)],
    ["progress", r.progress ? `${r.progress.percent} % ${r.progress.message || ""}` : "–"]];
  $("r-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {class: k === "status" ? "status-" + v : ""}, v)]));
  await requestTimeline(r);
  let outcome = "";
  if (r.status === "succeeded") {
    const link = r.links.find((l) => l.rel === "result");
    outcome = JSON.stringify(await client.json(link.href), null, 2);
  } else if (r.error) outcome = JSON.stringify(r.error, null, 2);
  else outcome = "(not finished)";
  $("r-outcome").textContent = outcome;
  $("r-monitor").textContent = JSON.stringify(r, null, 2);
  await requestDeliveries(r);
  const input = await client.json(`/v1/queue/requests/${encodeURIComponent(id)}/input`);
  $("r-input").textContent = input.kept ? JSON.stringify(input.input, null, 2) : "(not kept once a request succeeds)";
}

// What a timeline entry says (GET /v1/queue/requests/{id}/timeline).
function timelineText(t) {
  switch (t.event) {
    case "started": return `started, attempt ${t.attempt}`;
    case "requeued": return `back in the queue, attempt ${t.attempt}`;
    case "cancel_requested": return "cancel requested";
    case "progress": return `progress ${t.progress ? `${t.progress.percent} % ${t.progress.message || ""}` : ""}`.trim();
    case "failed": case "canceled": return t.error && t.error.title ? `${t.event}: ${t.error.title}` : t.event;
    default: return t.event;
  }
}

async function requestTimeline(r) {
  const {items} = await client.json(`/v1/queue/requests/${encodeURIComponent(r.id)}/timeline`);
  const steps = [];
  if (r.retry_of) steps.push(el("li", {}, "retry of ", requestLink(r.retry_of)));
  for (const t of items) {
    // Stored events carry their number; milestones read from the record say so.
    const from = t.source === "events" ? el("span", {class: "muted"}, ` · event ${t.seq}`)
      : el("span", {class: "muted"}, " · from the record");
    steps.push(el("li", {dataset: {event: t.event, source: t.source, status: t.status}},
      el("time", {dateTime: t.at}, fmtTime(t.at)), " ", timelineText(t), from));
  }
  if (r.expires_at) steps.push(el("li", {class: "muted"}, `record kept until ${new Date(r.expires_at).toLocaleString()}`));
  $("r-timeline").replaceChildren(...steps);
}

async function requestDeliveries(r) {
  const {items} = await client.json(`/v1/queue/requests/${encodeURIComponent(r.id)}/deliveries`);
  $("r-deliveries-empty").hidden = items.length > 0;
  // An operator redelivers another client's delivery by naming that client.
  const whose = r.client && r.client !== session.client ? "?client=" + encodeURIComponent(r.client) : "";
  $("r-deliveries").replaceChildren(...items.map((d) => {
    const a = d.attempts[d.attempts.length - 1] || {};
    const redeliver = el("button", {type: "button", class: "redeliver"}, "Redeliver");
    redeliver.addEventListener("click", async () => {
      try {
        await client.json(`/v1/webhooks/deliveries/${d.id}/redeliver` + whose, {method: "POST"});
        $("r-msg").textContent = "redelivering " + d.id;
        route();
      } catch (e) { $("r-msg").textContent = errorText(e); }
    });
    return el("tr", {dataset: {id: d.id}}, el("td", {}, el("code", {}, d.id)), el("td", {}, d.event_type),
      el("td", {}, d.endpoint_id ? el("code", {}, d.endpoint_id) : "callback " + (d.url || "")),
      el("td", {class: d.status === "delivered" ? "ok" : "bad"}, d.status),
      el("td", {}, String(d.attempts.length)),
      el("td", {class: "code"}, a.status_code ? String(a.status_code) : a.error || "–"),
      el("td", {}, redeliver));
  }));
}

async function retry(id) {
  const r = await client.json(`/v1/queue/requests/${encodeURIComponent(id)}/retry`,
    {method: "POST", headers: {Prefer: "respond-async"}});
  return r.id;
}

$("r-cancel").addEventListener("click", async () => {
  try {
    await client.json("/v1/queue/requests/" + encodeURIComponent($("r-id").textContent), {method: "DELETE"});
    $("r-msg").textContent = "cancel requested";
    route();
  } catch (e) { $("r-msg").textContent = errorText(e); }
});
$("r-retry").addEventListener("click", async () => {
  try { location.hash = "#request/" + (await retry($("r-id").textContent)); } catch (e) { $("r-msg").textContent = errorText(e); }
});

// -- failures -----------------------------------------------------------------------------

const selected = new Set();

async function failures() {
  const {items} = await client.json("/v1/queue/requests?status=failed&limit=100" + clientParam());
  const groups = new Map();
  for (const r of items) {
    const type = (r.error && r.error.type) || "about:blank";
    const key = type + " " + r.operation;
    if (!groups.has(key)) groups.set(key, {type, title: (r.error && r.error.title) || type, operation: r.operation, items: []});
    groups.get(key).items.push(r);
  }
  $("failures-empty").hidden = items.length > 0;
  for (const id of [...selected]) if (!items.some((r) => r.id === id)) selected.delete(id);
  $("retry-selected").disabled = selected.size === 0;
  $("failure-groups").replaceChildren(...[...groups.values()].map((g) => {
    const rows = g.items.map((r) => {
      const box = el("input", {type: "checkbox", checked: selected.has(r.id), ariaLabel: "select " + r.id});
      box.addEventListener("change", () => {
        if (box.checked) selected.add(r.id); else selected.delete(r.id);
        $("retry-selected").disabled = selected.size === 0;
      });
      const button = el("button", {type: "button", className: "retry"}, "Retry");
      const out = el("span", {class: "retried"});
      button.addEventListener("click", async () => {
        button.disabled = true;
        try { const id = await retry(r.id); out.replaceChildren("retried as ", requestLink(id)); } catch (e) { out.textContent = errorText(e); }
      });
      return el("tr", {dataset: {id: r.id}}, el("td", {}, box), el("td", {}, requestLink(r.id)),
        el("td", {}, r.client || session.client), el("td", {}, fmtTime(r.finished_at)),
        el("td", {}, (r.error && r.error.detail) || ""), el("td", {}, button, " ", out));
    });
    return el("div", {class: "group", dataset: {type: g.type, operation: g.operation}},
      el("h3", {}, el("span", {class: "bad"}, g.title), el("code", {}, g.type), el("span", {}, g.operation),
        el("span", {class: "muted"}, `${g.items.length} failed`)),
      el("table", {}, el("tbody", {}, ...rows)));
  }));
}

$("retry-selected").addEventListener("click", async () => {
  const ids = [...selected];
  selected.clear();
  let ok = 0;
  const errors = [];
  for (const id of ids) {
    try { await retry(id); ok += 1; } catch (e) { errors.push(errorText(e)); }
  }
  $("fail-msg").textContent = `retried ${ok} of ${ids.length}` + (errors.length ? ": " + errors[0] : "");
  route();
});

// -- webhooks -----------------------------------------------------------------------------

function health(deliveries) {
  const attempts = deliveries.flatMap((d) => d.attempts);
  const okCount = attempts.filter((a) => a.status_code >= 200 && a.status_code < 300).length;
  const last = attempts.filter((a) => !(a.status_code >= 200 && a.status_code < 300))
    .sort((a, b) => (a.at < b.at ? 1 : -1))[0];
  return {rate: attempts.length ? Math.round((100 * okCount) / attempts.length) + " %" : "–", last};
}

async function webhooks() {
  const {items} = await client.json("/v1/webhooks/endpoints?limit=100" + clientParam());
  $("endpoints-empty").hidden = items.length > 0;
  const blocks = await Promise.all(items.map(async (ep) => {
    // An operator acts on another client's endpoint by naming that client.
    const whose = ep.client ? "client=" + encodeURIComponent(ep.client) : "";
    const q = (sep) => (whose ? sep + whose : "");
    const {items: deliveries} = await client.json(`/v1/webhooks/endpoints/${ep.id}/deliveries?limit=20` + q("&"));
    const h = health(deliveries);
    const lastError = h.last ? (h.last.status_code ? "HTTP " + h.last.status_code : "") + (h.last.error ? " " + h.last.error : "") : "none";
    const msg = el("span", {role: "status"});
    const act = (label, fn) => {
      const b = el("button", {type: "button"}, label);
      b.addEventListener("click", async () => {
        try { msg.textContent = (await fn()) || ""; route(); } catch (e) { msg.textContent = errorText(e); }
      });
      return b;
    };
    const toggle = act(ep.disabled ? "Enable" : "Disable", async () => {
      await client.json("/v1/webhooks/endpoints/" + ep.id + q("?"), {method: "PATCH", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({disabled: !ep.disabled})});
    });
    const rotate = act("Rotate secret", async () => {
      const r = await client.json(`/v1/webhooks/endpoints/${ep.id}/rotate-secret` + q("?"), {method: "POST"});
      return "new secret: " + r.secret;
    });
    const rows = deliveries.map((d) => {
      const a = d.attempts[d.attempts.length - 1] || {};
      const redeliver = act("Redeliver", async () => {
        await client.json(`/v1/webhooks/deliveries/${d.id}/redeliver` + q("?"), {method: "POST"});
        return "redelivering " + d.id;
      });
      redeliver.className = "redeliver";
      return el("tr", {dataset: {id: d.id}}, el("td", {}, el("code", {}, d.id)), el("td", {}, d.event_type),
        el("td", {}, d.request_id ? requestLink(d.request_id) : ""), el("td", {class: d.status === "delivered" ? "ok" : "bad"}, d.status),
        el("td", {}, String(d.attempts.length)), el("td", {class: "code"}, a.status_code ? String(a.status_code) : a.error || "–"),
        el("td", {}, a.duration_ms !== undefined ? a.duration_ms + " ms" : ""), el("td", {class: "excerpt", title: a.response || ""}, a.response || ""),
        el("td", {}, redeliver));
    });
    return el("div", {class: "endpoint", dataset: {id: ep.id}},
      el("h3", {}, el("code", {}, ep.url), el("span", {class: ep.disabled ? "bad" : "ok"}, ep.disabled ? "disabled" : "enabled"),
        ep.client ? el("span", {class: "muted"}, "client " + ep.client) : null),
      el("p", {class: "health"}, `success rate ${h.rate} · last error: `, el("span", {class: "last-error"}, lastError),
        ep.disabled_reason ? ` · disabled: ${ep.disabled_reason}` : ""),
      el("p", {class: "actions"}, toggle, rotate, msg),
      el("table", {}, el("thead", {}, el("tr", {}, ...["delivery", "event", "request", "status", "attempts", "last answer", "duration", "response", ""].map((t) => el("th", {}, t)))),
        el("tbody", {}, ...rows)));
  }));
  $("endpoints").replaceChildren(...blocks);
}

// -- routing ------------------------------------------------------------------------------

const VIEWS = {overview, workers, requests, failures, webhooks};

async function route() {
  clearTimeout(timer);
  const [name, arg] = (location.hash.slice(1) || "overview").split("/");
  const view = name === "request" ? "request" : (VIEWS[name] ? name : "overview");
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== view;
  for (const a of document.querySelectorAll("#views a")) {
    if (a.getAttribute("href") === "#" + view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  try {
    await ensureSession();
    if (view === "request") await requestPage(decodeURIComponent(arg || ""));
    else await VIEWS[view]();
    $("error").textContent = "";
    document.body.dataset.loaded = view;
  } catch (e) {
    if (e instanceof AcceptdError && e.status === 401) {
      session = null;
      askForKey(client.apiKey ? "That key was refused." : "");
      return;
    }
    $("error").textContent = errorText(e);
  }
  // Live views refresh; the request page too, until it is finished.
  if (view !== "failures" && view !== "webhooks") timer = setTimeout(route, REFRESH_MS);
}

window.addEventListener("hashchange", route);
route();
