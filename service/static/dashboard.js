// The acceptd dashboard: operations, a submit form, and the caller's requests kept live over
// Server-Sent Events. Plain browser JavaScript, no build step. Every piece of data is inserted
// with textContent (never innerHTML), so nothing the API returns can become markup.
import {AcceptdClient, AcceptdError} from "./acceptd-client.js";

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

// ?access_token=KEY: the client module sends it as a bearer header, and as ?access_token= on
// event streams (EventSource cannot send headers).
const client = new AcceptdClient({apiKey: new URLSearchParams(location.search).get("access_token")});

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child); // strings become text nodes
  return node;
}

// Problem details (RFC 9457) as one line: the detail, else the title, else the HTTP status.
function problemText(problem, status) {
  if (problem && typeof problem === "object" && Object.keys(problem).length) {
    return problem.detail || problem.title || String(problem.status);
  }
  return status ? "HTTP " + status : "unknown error";
}

// An AcceptdError's problem as one line; any other error (the network) as its message.
function errorText(e) {
  return e instanceof AcceptdError ? problemText(e.problem, e.status) : "Network error: " + e.message;
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
  let items;
  try { items = await client.operations(); } catch (e) { return showMessage("Cannot list operations: " + errorText(e), true); }
  $("ops").textContent = "";
  $("op").textContent = "";
  for (const op of items) {
    operations.set(op.name, op);
    $("op").append(el("option", {value: op.name, textContent: op.name}));
    const item = el("li", {title: "Use " + op.name + " in the form"},
      el("code", {textContent: op.name}), el("span", {className: "summary", textContent: op.summary || ""}));
    item.dataset.op = op.name;
    item.addEventListener("click", () => selectOperation(op.name));
    $("ops").append(item);
  }
  if (items.length) selectOperation(items[0].name);
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
    const data = await client.submit(name, undefined, {body});
    upsert(data);
    showMessage("Accepted " + data.id);
  } catch (e) {
    showMessage(errorText(e), true, e instanceof AcceptdError ? e.errors : []);
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
    if (row.positionStream) row.positionStream.abort();
    tr.remove();
    rows.delete(tr.dataset.id);
  }
}

async function fetchResult(row) {
  const m = row.monitor;
  const cell = row.cells.result;
  try {
    const data = await client.result(m);
    cell.textContent = "";
    cell.append(renderResult(operations.get(m.operation), data));
  } catch (e) {
    cell.textContent = "";
    if (e instanceof AcceptdError) cell.append(el("span", {className: "error-text", textContent: errorText(e)}));
    else cell.textContent = "Cannot load the result: " + e.message;
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
    upsert(await client.cancel(id));
  } catch (e) {
    showMessage(e instanceof AcceptdError ? "Cannot cancel " + id + ": " + errorText(e) : errorText(e), true);
  }
}

// Positions only come on per-request streams: follow queued requests (the newest rows, at
// most MAX_POSITION_STREAMS) and close each stream once its request leaves the queue.
function followPositions() {
  let open = 0;
  for (const row of rows.values()) {
    if (row.positionStream && row.monitor.status !== "queued") {
      row.positionStream.abort();
      row.positionStream = null;
    }
    if (row.positionStream) open++;
  }
  for (const tr of $("rows").children) { // top (newest, most visible) first
    if (open >= MAX_POSITION_STREAMS) break;
    const row = rows.get(tr.dataset.id);
    if (row.monitor.status !== "queued" || row.positionStream) continue;
    const id = row.monitor.id;
    const watching = new AbortController();
    const onEvent = (type, data) => {
      const current = rows.get(id);
      if (type === "status") upsert(data);
      else if (type === "position" && current && current.monitor.status === "queued") {
        current.monitor.position = data.position;
        render(current);
      }
    };
    client.watch(id, {onEvent, signal: watching.signal}).catch(() => {}); // aborted: left the queue
    row.positionStream = watching;
    open++;
  }
}

async function loadRequests() {
  try {
    const body = await client.list({limit: 50});
    for (const monitor of body.items) upsert(monitor, {append: true}); // newest first
    $("empty").hidden = rows.size > 0;
  } catch (e) {
    showMessage(e instanceof AcceptdError ? "Cannot list requests: " + errorText(e) : errorText(e), true);
  }
}

// One stream for all of the caller's requests. Opened before the initial list is read, so no
// change falls between the two; upsert() settles which of them is newer.
function followAll() {
  const live = $("live");
  client.stream("/v1/queue/events", {
    open: () => { live.textContent = "live"; live.className = "live on"; },
    error: (e, source) => {
      // EventSource reconnects by itself (with Last-Event-ID) unless it reached CLOSED.
      const closed = source.readyState === EventSource.CLOSED;
      live.textContent = closed ? "disconnected: reload the page" : "reconnecting…";
      live.className = "live off";
    },
    status: (data) => upsert(data),
    progress: (data) => {
      const row = rows.get(data.id);
      if (row) upsert({...row.monitor, ...data});
      else refreshOne(data.id); // a request we have not listed (e.g. from another tab)
    },
    // The server could not replay everything we missed while disconnected: start over.
    reset: () => loadRequests(),
  });
}

async function refreshOne(id) {
  try { upsert(await client.get(id)); } catch { /* gone or unreachable: the stream goes on */ }
}

followAll();
loadOperations().catch((e) => showMessage("Cannot list operations: " + e.message, true));
loadRequests();
