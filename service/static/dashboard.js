// The acceptd dashboard: operations, a submit form, and the caller's requests kept live over
// Server-Sent Events. Plain browser JavaScript, no build step. Every piece of data is inserted
// with textContent (never innerHTML), so nothing the API returns can become markup.
"use strict";

const $ = (id) => document.getElementById(id);
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const ACTIVE = new Set(["queued", "running"]);
const MAX_ROWS = 100; // older rows are dropped so a long-open page stays light
const MAX_POSITION_STREAMS = 20; // per-request streams cost a connection each

// Friendlier examples than the schema alone suggests, for the operations the service ships.
const EXAMPLES = {
  echo: {hello: "world"},
  sleep: {seconds: 3},
  "bank-account-validations": {iban: "DE89 3704 0044 0532 0130 00"},
  "image-thumbnails": {width: 128, height: 128},
};

// ?access_token=KEY: fetch() sends it as a bearer header; EventSource cannot send headers, so
// stream URLs carry it as a query parameter (the service accepts that on /events only).
const token = new URLSearchParams(location.search).get("access_token");

function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token) headers.set("Authorization", "Bearer " + token);
  return fetch(path, {...options, headers});
}

function streamUrl(path) {
  return token ? path + (path.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(token) : path;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child); // strings become text nodes
  return node;
}

// Problem details (RFC 9457) as one line: the detail, else the title, else the HTTP status.
function problemText(problem, response) {
  if (problem && typeof problem === "object") return problem.detail || problem.title || String(problem.status);
  return response ? response.status + " " + response.statusText : "unknown error";
}

async function readJson(response) {
  const text = await response.text();
  try { return text ? JSON.parse(text) : null; } catch { return null; }
}

// -- operations and the form -------------------------------------------------------------

const operations = new Map(); // name -> the operation as listed (with schemas)
let fileRead = null; // a promise of the picked file as base64, merged into the input on submit

// A value satisfying the schema, for prefilling the textarea.
function exampleOf(schema) {
  if (!schema || typeof schema !== "object") return null;
  if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
  if ("default" in schema) return schema.default;
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  if (type === "object" || schema.properties) {
    const out = {};
    for (const name of schema.required || []) {
      const prop = (schema.properties || {})[name];
      if (prop && prop.contentEncoding !== "base64") out[name] = exampleOf(prop);
    }
    return out;
  }
  if (type === "number" || type === "integer") return schema.minimum ?? 0;
  if (type === "string") return "";
  if (type === "boolean") return false;
  if (type === "array") return [];
  return {};
}

// The input field holding a file's bytes (a base64 string property), if the operation has one.
function fileField(op) {
  const props = (op && op.input_schema && op.input_schema.properties) || {};
  return Object.keys(props).find((name) => props[name].contentEncoding === "base64") || null;
}

function selectOperation(name) {
  const op = operations.get(name);
  $("op").value = name;
  const example = name in EXAMPLES ? EXAMPLES[name] : exampleOf(op.input_schema);
  $("input").value = JSON.stringify(example ?? {}, null, 2);
  const field = fileField(op);
  $("file-row").hidden = !field;
  $("file-label").textContent = field ? "File for \u201c" + field + "\u201d (sent base64-encoded)" : "";
  $("file").value = "";
  fileRead = null;
  showMessage("");
}

async function loadOperations() {
  const response = await api("/v1/operations");
  const body = await readJson(response);
  if (!response.ok) return showMessage("Cannot list operations: " + problemText(body, response), true);
  $("ops").textContent = "";
  $("op").textContent = "";
  for (const op of body.items) {
    operations.set(op.name, op);
    $("op").append(el("option", {value: op.name, textContent: op.name}));
    const item = el("li", {title: "Use " + op.name + " in the form"},
      el("code", {textContent: op.name}), el("span", {className: "summary", textContent: op.summary || ""}));
    item.dataset.op = op.name;
    item.addEventListener("click", () => selectOperation(op.name));
    $("ops").append(item);
  }
  if (body.items.length) selectOperation(body.items[0].name);
}

function showMessage(text, isError = false, fieldErrors = []) {
  $("msg").textContent = text;
  $("msg").className = isError ? "msg-error" : "";
  $("field-errors").textContent = "";
  for (const e of fieldErrors) {
    $("field-errors").append(el("li", {textContent: (e.path || "(input)") + ": " + e.message}));
  }
}

$("op").addEventListener("change", () => selectOperation($("op").value));

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  // A promise, so a submit right after picking waits for the read instead of racing it.
  fileRead = file ? new Promise((resolve, reject) => {
    const reader = new FileReader();
    // readAsDataURL gives "data:<type>;base64,<data>"; the API wants only the data.
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(new Error("cannot read " + file.name));
    reader.readAsDataURL(file);
  }) : null;
});

$("submit").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("op").value;
  let body = $("input").value;
  const field = fileField(operations.get(name));
  if (field && fileRead) {
    // Merge the file into the typed JSON (kept out of the textarea: it can be megabytes).
    let input, data;
    try { input = JSON.parse(body); } catch (e) { return showMessage("The input is not valid JSON: " + e.message, true); }
    try { data = await fileRead; } catch (e) { return showMessage(e.message, true); }
    body = JSON.stringify({...input, [field]: data});
  }
  // Otherwise the text goes as typed: the service's own 400/422 says what is wrong with it.
  const button = event.submitter;
  if (button) button.disabled = true;
  showMessage("Submitting…");
  try {
    const response = await api("/v1/" + encodeURIComponent(name), {
      method: "POST",
      headers: {"Content-Type": "application/json", "Prefer": "respond-async"},
      body,
    });
    const data = await readJson(response);
    if (response.status === 202 && data) {
      upsert(data);
      showMessage("Accepted " + data.id);
    } else if (response.ok) {
      showMessage(response.status + " " + response.statusText); // e.g. 201: finished at once
      loadRequests();
    } else {
      showMessage(problemText(data, response), true, (data && data.errors) || []);
    }
  } catch (e) {
    showMessage("Network error: " + e.message, true);
  } finally {
    if (button) button.disabled = false;
  }
});

// -- requests ----------------------------------------------------------------------------

const rows = new Map(); // request id -> {monitor, tr, cells, positionStream, resultFetched}

function shortId(id) {
  return id.length > 12 ? id.slice(0, 6) + "…" + id.slice(-4) : id;
}

function newRow(monitor) {
  const cells = {};
  const tr = el("tr");
  tr.dataset.id = monitor.id;
  for (const name of ["id", "operation", "status", "position", "progress", "result", "actions"]) {
    cells[name] = el("td", {className: name});
    tr.append(cells[name]);
  }
  cells.id.append(el("code", {textContent: shortId(monitor.id), title: monitor.id}));
  cells.operation.textContent = monitor.operation;
  cells.statusBadge = el("span", {className: "badge"});
  cells.status.append(cells.statusBadge);
  cells.barFill = el("span");
  cells.progressText = el("span", {className: "muted"});
  cells.bar = el("div", {className: "bar"}, cells.barFill);
  cells.progress.append(cells.progressText, cells.bar);
  cells.cancel = el("button", {type: "button", textContent: "Cancel"});
  cells.cancel.addEventListener("click", () => cancel(monitor.id));
  cells.actions.append(cells.cancel);
  return {monitor: null, tr, cells, positionStream: null, resultFetched: false};
}

// Apply a monitor (from the list, a submit, a stream or a cancel) to its row.
function upsert(monitor, {append = false} = {}) {
  let row = rows.get(monitor.id);
  if (!row) {
    row = newRow(monitor);
    rows.set(monitor.id, row);
    if (append) $("rows").append(row.tr); else $("rows").prepend(row.tr);
    trimRows();
  } else if (row.monitor) {
    const old = row.monitor;
    // Sources race (the initial list against the live stream): never step back in time,
    // and never leave a terminal state.
    if (TERMINAL.has(old.status) && !TERMINAL.has(monitor.status)) return;
    if (monitor.updated_at && old.updated_at && monitor.updated_at < old.updated_at) return;
    // The all-requests stream carries no positions; keep the one we know.
    if (monitor.status === "queued" && monitor.position == null) monitor = {...monitor, position: old.position};
  }
  row.monitor = {...row.monitor, ...monitor};
  render(row);
  $("empty").hidden = rows.size > 0;
  followPositions();
}

function render(row) {
  const m = row.monitor;
  const c = row.cells;
  c.statusBadge.textContent = m.cancel_requested && ACTIVE.has(m.status) ? m.status + " (canceling)" : m.status;
  c.statusBadge.className = "badge badge-" + m.status;
  c.position.textContent = m.status === "queued" && m.position != null ? String(m.position) : "";
  const percent = m.status === "succeeded" ? 100 : (m.progress && m.progress.percent) || 0;
  c.barFill.style.width = Math.max(0, Math.min(100, percent)) + "%";
  c.bar.classList.toggle("done", m.status === "succeeded");
  c.progressText.textContent = m.progress || m.status === "succeeded" ? Math.round(percent) + "%" : "";
  c.bar.title = (m.progress && m.progress.message) || "";
  c.cancel.hidden = !ACTIVE.has(m.status);
  c.cancel.disabled = Boolean(m.cancel_requested);
  if (m.status === "succeeded" && !row.resultFetched) {
    row.resultFetched = true;
    fetchResult(row);
  } else if ((m.status === "failed" || m.status === "canceled") && m.error) {
    c.result.textContent = "";
    c.result.append(el("span", {className: "error-text", textContent: problemText(m.error)}));
  }
}

// The table is newest first, so its last rows are the oldest.
function trimRows() {
  while (rows.size > MAX_ROWS) {
    const tr = $("rows").lastElementChild;
    const row = rows.get(tr.dataset.id);
    if (row.positionStream) row.positionStream.close();
    tr.remove();
    rows.delete(tr.dataset.id);
  }
}

async function fetchResult(row) {
  const m = row.monitor;
  const cell = row.cells.result;
  try {
    const response = await api("/v1/" + encodeURIComponent(m.operation) + "/" + encodeURIComponent(m.id));
    const data = await readJson(response);
    cell.textContent = "";
    if (!response.ok) {
      cell.append(el("span", {className: "error-text", textContent: problemText(data, response)}));
      return;
    }
    cell.append(renderResult(operations.get(m.operation), data));
  } catch (e) {
    cell.textContent = "Cannot load the result: " + e.message;
  }
}

// Images (properties the output schema marks as base64 with a media type) as <img>; the rest
// as compact JSON.
function renderResult(op, data) {
  const props = (op && op.output_schema && op.output_schema.properties) || {};
  const box = el("div");
  let rest = data;
  if (data && typeof data === "object" && !Array.isArray(data)) {
    rest = {...data};
    for (const [name, schema] of Object.entries(props)) {
      const value = data[name];
      if (schema.contentEncoding === "base64" && /^image\/[\w.+-]+$/.test(schema.contentMediaType || "")
          && typeof value === "string" && /^[A-Za-z0-9+/=]+$/.test(value)) {
        box.append(el("img", {src: "data:" + schema.contentMediaType + ";base64," + value, alt: name}));
        delete rest[name];
      }
    }
  }
  const text = JSON.stringify(rest);
  box.append(el("code", {textContent: text.length > 300 ? text.slice(0, 300) + "…" : text}));
  return box;
}

async function cancel(id) {
  try {
    const response = await api("/v1/queue/requests/" + encodeURIComponent(id), {method: "DELETE"});
    const data = await readJson(response);
    if (response.ok && data) upsert(data);
    else showMessage("Cannot cancel " + id + ": " + problemText(data, response), true);
  } catch (e) {
    showMessage("Network error: " + e.message, true);
  }
}

// Positions only come on per-request streams: follow queued requests (the newest rows, at
// most MAX_POSITION_STREAMS) and close each stream once its request leaves the queue.
function followPositions() {
  let open = 0;
  for (const row of rows.values()) {
    if (row.positionStream && row.monitor.status !== "queued") {
      row.positionStream.close();
      row.positionStream = null;
    }
    if (row.positionStream) open++;
  }
  for (const tr of $("rows").children) { // top (newest, most visible) first
    if (open >= MAX_POSITION_STREAMS) break;
    const row = rows.get(tr.dataset.id);
    if (row.monitor.status !== "queued" || row.positionStream) continue;
    const id = row.monitor.id;
    const source = new EventSource(streamUrl("/v1/queue/requests/" + encodeURIComponent(id) + "/events"));
    source.addEventListener("position", (e) => {
      const data = JSON.parse(e.data);
      const current = rows.get(id);
      if (current && current.monitor.status === "queued") {
        current.monitor.position = data.position;
        render(current);
      }
    });
    source.addEventListener("status", (e) => upsert(JSON.parse(e.data)));
    row.positionStream = source;
    open++;
  }
}

async function loadRequests() {
  try {
    const response = await api("/v1/queue/requests?limit=50");
    const body = await readJson(response);
    if (!response.ok) return showMessage("Cannot list requests: " + problemText(body, response), true);
    for (const monitor of body.items) upsert(monitor, {append: true}); // newest first
    $("empty").hidden = rows.size > 0;
  } catch (e) {
    showMessage("Network error: " + e.message, true);
  }
}

// One stream for all of the caller's requests. Opened before the initial list is read, so no
// change falls between the two; upsert() settles which of them is newer.
function followAll() {
  const source = new EventSource(streamUrl("/v1/queue/events"));
  const live = $("live");
  source.addEventListener("open", () => { live.textContent = "live"; live.className = "live on"; });
  source.addEventListener("error", () => {
    // EventSource reconnects by itself (with Last-Event-ID) unless it reached CLOSED.
    const closed = source.readyState === EventSource.CLOSED;
    live.textContent = closed ? "disconnected: reload the page" : "reconnecting…";
    live.className = "live off";
  });
  source.addEventListener("status", (e) => upsert(JSON.parse(e.data)));
  source.addEventListener("progress", (e) => {
    const data = JSON.parse(e.data);
    const row = rows.get(data.id);
    if (row) upsert({...row.monitor, ...data});
    else refreshOne(data.id); // a request we have not listed (e.g. from another tab)
  });
  // The server could not replay everything we missed while disconnected: start over.
  source.addEventListener("reset", () => loadRequests());
}

async function refreshOne(id) {
  const response = await api("/v1/queue/requests/" + encodeURIComponent(id));
  if (response.ok) upsert(await response.json());
}

followAll();
loadOperations().catch((e) => showMessage("Cannot list operations: " + e.message, true));
loadRequests();
