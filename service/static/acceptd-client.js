// acceptd-client.js: a dependency-free ES module for browsers (the dashboard uses it).
//
//   import {AcceptdClient} from "/static/acceptd-client.js";
//   const client = new AcceptdClient({apiKey: "…"});         // baseUrl defaults to this origin
//   const request = await client.submit("sleep", {seconds: 3}); // 202: the status monitor
//   const final = await client.watch(request.id, {onEvent: (type, data) => console.log(type, data)});
//   const result = await client.result(final);                 // or throws AcceptdError
//
// fetch() sends the key as a bearer header; EventSource cannot send headers, so stream URLs
// carry it as ?access_token= (the service accepts that on …/events only).

export const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

// An unsuccessful answer or a failed request: `problem` is the RFC 9457 problem details.
export class AcceptdError extends Error {
  constructor(problem, status) {
    super((problem && (problem.detail || problem.title)) || "HTTP " + status);
    this.name = "AcceptdError";
    this.problem = problem || {};
    this.status = status;
    this.errors = (problem && problem.errors) || [];
  }
}

function newKey() {
  if (globalThis.crypto && crypto.randomUUID) return "acceptd-js-" + crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
  return "acceptd-js-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function parse(text) {
  try { return JSON.parse(text); } catch { return text; }
}

async function readJson(response) {
  const text = await response.text();
  try { return text ? JSON.parse(text) : null; } catch { return null; }
}

export class AcceptdClient {
  constructor({baseUrl = "", apiKey = null} = {}) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.apiKey = apiKey;
  }

  // fetch() with the key; the raw Response.
  fetch(path, options = {}) {
    const headers = new Headers(options.headers || {});
    if (this.apiKey) headers.set("Authorization", "Bearer " + this.apiKey);
    return fetch(/^https?:/.test(path) ? path : this.baseUrl + path, {...options, headers});
  }

  // The JSON body of a successful answer; an AcceptdError otherwise.
  async json(path, options = {}) {
    const response = await this.fetch(path, options);
    const data = await readJson(response);
    if (!response.ok) throw new AcceptdError(data, response.status);
    return data;
  }

  // An event-stream URL with the key as ?access_token=.
  streamUrl(path) {
    const url = this.baseUrl + path;
    if (!this.apiKey) return url;
    return url + (url.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(this.apiKey);
  }

  async operations() {
    return (await this.json("/v1/operations")).items;
  }

  // Queue work (always respond-async) with a fresh Idempotency-Key; the status monitor.
  // `body` sends text as typed instead of JSON.stringify(input).
  submit(operation, input, {priority, idempotencyKey, callbackUrl, callbackEvents, queueTimeout, body} = {}) {
    const headers = {
      "Content-Type": "application/json",
      "Prefer": "respond-async",
      "Idempotency-Key": idempotencyKey || newKey(),
    };
    if (priority != null) headers["Queue-Priority"] = String(priority);
    if (callbackUrl) headers["Callback-Url"] = callbackUrl;
    if (callbackEvents) headers["Callback-Events"] = [].concat(callbackEvents).join(",");
    if (queueTimeout != null) headers["Queue-Timeout"] = String(queueTimeout);
    return this.json("/v1/" + encodeURIComponent(operation), {
      method: "POST", headers, body: body !== undefined ? body : JSON.stringify(input),
    });
  }

  get(id) {
    return this.json("/v1/queue/requests/" + encodeURIComponent(id));
  }

  cancel(id) {
    return this.json("/v1/queue/requests/" + encodeURIComponent(id), {method: "DELETE"});
  }

  // One page of the caller's requests: {items, next}.
  list({status, operation, limit, cursor} = {}) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries({status, operation, limit, cursor})) if (v != null) q.set(k, v);
    return this.json("/v1/queue/requests" + (q.size ? "?" + q : ""));
  }

  // The result of a finished request (given its monitor); AcceptdError if it failed.
  async result(monitor) {
    if (monitor.status === "failed" || monitor.status === "canceled") throw new AcceptdError(monitor.error, 410);
    const link = (monitor.links || []).find((l) => l.rel === "result");
    const path = monitor.resourceLocation || (link ? link.href
      : "/v1/" + encodeURIComponent(monitor.operation) + "/" + encodeURIComponent(monitor.id));
    return this.json(path);
  }

  // Poll the monitor until the request finishes, waiting what Retry-After asks each time.
  async poll(id, {onEvent, signal} = {}) {
    let last = null;
    for (;;) {
      if (signal && signal.aborted) throw signal.reason;
      const response = await this.fetch("/v1/queue/requests/" + encodeURIComponent(id));
      const data = await readJson(response);
      if (response.ok) {
        const text = JSON.stringify(data);
        if (onEvent && text !== last) onEvent("status", data);
        last = text;
        if (TERMINAL.has(data.status)) return data;
      } else if (![429, 502, 503, 504].includes(response.status)) {
        throw new AcceptdError(data, response.status);
      }
      const wait = Math.min(Number(response.headers.get("Retry-After")) || 1, 60);
      await new Promise((done) => setTimeout(done, wait * 1000));
    }
  }

  // An EventSource on a stream path, with a listener per event type: {status: fn(data), …}.
  stream(path, handlers = {}) {
    const source = new EventSource(this.streamUrl(path));
    for (const [type, handler] of Object.entries(handlers)) {
      source.addEventListener(type, (e) => handler(type === "open" || type === "error" ? e : parse(e.data), source));
    }
    return source;
  }

  // Follow one request until it finishes; resolves with the final monitor. onEvent(type, data)
  // sees every status/position/progress event; `signal` (an AbortSignal) stops watching. The
  // browser resumes dropped streams with Last-Event-ID; the 204 after the end closes it.
  watch(id, {onEvent, signal} = {}) {
    return new Promise((resolve, reject) => {
      const path = "/v1/queue/requests/" + encodeURIComponent(id) + "/events";
      let source = null;
      const finish = (monitor) => { source.close(); resolve(monitor); };
      const handler = (type) => (data) => {
        if (onEvent) onEvent(type, data);
        if (type === "status" && TERMINAL.has(data.status)) finish(data);
      };
      source = this.stream(path, {
        status: handler("status"), position: handler("position"), progress: handler("progress"),
        error: () => {
          if (source.readyState !== EventSource.CLOSED) return; // reconnecting by itself
          this.poll(id, {onEvent, signal}).then(resolve, reject); // ended (204) or refused (429/503)
        },
      });
      if (signal) signal.addEventListener("abort", () => { source.close(); reject(signal.reason); }, {once: true});
    });
  }
}
