// Talking to gima-server: at most 4 requests in flight, honest waits on 429/503 (Retry-After, at most one
// automatic retry), and replies followed to their end across network cuts with Last-Event-ID.
import { sseEvents } from "./sse.js";

export const BACKOFF_MS = [100, 200, 400, 800, 1600];
const MAX_IN_FLIGHT = 4;

export class HttpError extends Error {
  constructor(status, body, retryAfterS) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
    this.retryAfterS = retryAfterS;
  }
}

export class NeedsReconnect extends Error {
  constructor() { super("the connection was lost"); }
}

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
});

function retryAfterS(resp) {
  const raw = resp.headers.get("Retry-After");
  const seconds = raw && /^\d+$/.test(raw.trim()) ? Number(raw) : 1;
  return Math.max(1, seconds);
}

export class Transport {
  // base: "" for the page's own origin, or the server's origin for the widget; token(): a Bearer token or null.
  constructor({ base = "", token = () => null, onWait = () => {} } = {}) {
    this.base = base;
    this.token = token;
    this.onWait = onWait; // told "try again in N s" while a 429/503 is waited out
    this.inFlight = 0;
    this.queue = [];
    this.csrf = null;
  }

  async slot() {
    if (this.inFlight < MAX_IN_FLIGHT) { this.inFlight += 1; return; }
    await new Promise((resolve) => this.queue.push(resolve));
    this.inFlight += 1;
  }

  release() {
    this.inFlight -= 1;
    const next = this.queue.shift();
    if (next) next();
  }

  headers(extra = {}) {
    const headers = { ...extra };
    const token = this.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    else if (this.csrf) headers["X-CSRF-Token"] = this.csrf;
    return headers;
  }

  // One request; a 429/503 is waited out once (Retry-After), then reported. Streams keep their slot until read.
  // `body` goes as JSON, `form` (FormData) as multipart.
  async request(path, { method = "GET", body, form, headers = {}, signal, retried = false, stream = false } = {}) {
    await this.slot();
    let keepSlot = false;
    try {
      const init = { method, headers: this.headers(headers), signal, credentials: this.base ? "omit" : "same-origin" };
      if (body !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      } else if (form !== undefined) {
        init.body = form;
      }
      const resp = await fetch(this.base + path, init);
      if (resp.ok) {
        keepSlot = stream && resp.status === 200;
        if (keepSlot) resp.releaseSlot = () => this.release();
        return resp;
      }
      const parsed = await resp.json().catch(() => null);
      const error = new HttpError(resp.status, parsed, (resp.status === 429 || resp.status === 503) ? retryAfterS(resp) : undefined);
      if (error.retryAfterS === undefined || retried) throw error;
      this.release();
      keepSlot = true; // released already
      this.onWait(error.retryAfterS);
      await sleep(error.retryAfterS * 1000, signal);
      this.onWait(0);
      return await this.request(path, { method, body, form, headers, signal, retried: true, stream });
    } finally {
      if (!keepSlot) this.release();
    }
  }

  async json(path, options) {
    const resp = await this.request(path, options);
    return resp.status === 204 ? null : resp.json();
  }

  // Read a reply's events from a response, then from resumes, until its last event. `seen(id)` says whether an
  // event was shown already (replays after a cut never show it twice); `onEvent` shows it.
  async follow(firstResponse, messageIdOf, { onEvent, lastEventId = 0, signal, onRetry = () => {} }) {
    let resp = firstResponse;
    let last = lastEventId;
    let failures = 0;
    for (;;) {
      let ended = false;
      try {
        if (!resp) {
          resp = await this.request(`/api/chat/streams/${encodeURIComponent(messageIdOf())}/events`, {
            headers: { "Last-Event-ID": String(last) }, signal, stream: true });
          if (resp.status === 204) return; // nothing after `last`: the reply had ended
        }
        try {
          for await (const ev of sseEvents(resp.body, signal)) {
            if (ev.id !== undefined && ev.id <= last && ev.name !== "snapshot") continue;
            if (ev.id !== undefined) last = ev.id;
            failures = 0;
            onEvent(ev);
            if (ev.name === "done" || (ev.name === "error" && ev.id !== undefined)) ended = true;
            if (ev.name === "error" && ev.id === undefined && ev.data.code !== "backing_unavailable"
                && ev.data.code !== "slow_consumer") ended = true;
          }
        } finally {
          resp.releaseSlot?.();
        }
      } catch (error) {
        if (signal?.aborted) throw error;
        if (error instanceof HttpError && error.status !== 503 && error.status !== 429) throw error;
      }
      if (ended) return;
      resp = null;
      if (failures >= BACKOFF_MS.length - 1 || !messageIdOf()) throw new NeedsReconnect();
      const delay = BACKOFF_MS[failures] * (0.5 + Math.random());
      failures += 1;
      onRetry(failures, delay);
      await sleep(delay, signal);
    }
  }
}
