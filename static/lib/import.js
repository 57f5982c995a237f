// The alpha import of an old chat app's export: batches sent in the background, polling as the server asks
// (pollAfterMs), never while a reply streams in this tab, stopping with a clear message on 401 and 429.
import { HttpError } from "./transport.js";
import { t } from "./i18n.js";

const BATCH = 50;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Keep only what the server imports; an export's other fields (updatedAt, model, agent, ids…) are dropped.
export function conversationsOf(exported) {
  const list = Array.isArray(exported?.conversations) ? exported.conversations : [];
  return list.filter((c) => c && Array.isArray(c.messages) && c.messages.length).map((c) => ({
    title: typeof c.title === "string" ? c.title.slice(0, 200) : undefined,
    createdAt: typeof c.createdAt === "number" ? c.createdAt : undefined,
    messages: c.messages.filter((m) => m && (m.role === "user" || m.role === "assistant") && typeof m.content === "string")
      .map((m) => ({ role: m.role, content: m.content, ...(typeof m.createdAt === "number" ? { createdAt: m.createdAt } : {}) })),
  })).filter((c) => c.messages.length);
}

export class ImportPanel {
  constructor({ transport, pane, ui, onImported = () => {} }) {
    this.transport = transport;
    this.pane = pane;
    this.ui = ui;
    this.onImported = onImported;
    this.running = false;
    ui.start.addEventListener("click", () => this.start());
  }

  say(text) { this.ui.status.textContent = text; }

  async quietMoment() {
    while (this.pane.streaming) await sleep(250); // chat first: the import waits while a reply streams
  }

  // One request without the transport's automatic retry: a 429 here means "later", said to the person.
  async call(path, options) {
    try {
      return await this.transport.json(path, { ...options, retried: true });
    } catch (error) {
      if (error instanceof HttpError && (error.status === 401 || error.status === 429)) {
        throw new Error(error.status === 401 ? t("importSignedOut") : t("importSlowDown", { s: error.retryAfterS ?? 1 }));
      }
      throw error;
    }
  }

  async start() {
    if (this.running) return;
    const file = this.ui.file.files?.[0];
    if (!file) { this.say(t("importChoose")); return; }
    let conversations;
    try {
      conversations = conversationsOf(JSON.parse(await file.text()));
    } catch {
      this.say(t("importNotJson"));
      return;
    }
    if (!conversations.length) { this.say(t("importEmpty")); return; }
    this.running = true;
    this.ui.start.disabled = true;
    this.ui.progress.hidden = false;
    this.ui.progress.max = conversations.length;
    this.ui.progress.value = 0;
    try {
      let { job } = await this.call("/api/migration/jobs", { method: "POST",
        body: { source: "indexeddb", totalConversations: conversations.length } });
      for (let seq = 0; seq * BATCH < conversations.length; seq += 1) {
        await this.quietMoment();
        ({ job } = await this.call(`/api/migration/jobs/${job.id}/batches/${seq}`, { method: "PUT",
          body: { conversations: conversations.slice(seq * BATCH, (seq + 1) * BATCH) } }));
        this.say(t("importSent", { n: Math.min((seq + 1) * BATCH, conversations.length), total: conversations.length }));
      }
      ({ job } = await this.call(`/api/migration/jobs/${job.id}/complete`, { method: "POST" }));
      while (job.status !== "done" && job.status !== "failed") {
        await sleep(job.pollAfterMs ?? 1000);
        await this.quietMoment();
        ({ job } = await this.call(`/api/migration/jobs/${job.id}`));
        this.ui.progress.value = job.imported + job.skipped + job.failed;
        this.say(t(job.status === "paused" ? "importPaused" : "importProgressText", { n: job.imported, total: conversations.length }));
      }
      this.ui.progress.value = conversations.length;
      this.say(job.status === "done" ? t("importDone", { n: job.imported, skipped: job.skipped })
        : t("importFailed", { error: job.error || "see the server" }));
      this.onImported();
    } catch (error) {
      this.say(error.message);
    } finally {
      this.running = false;
      this.ui.start.disabled = false;
    }
  }
}
