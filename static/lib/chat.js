// One conversation pane, shared by the page and the widget: send discipline, replies followed to their end
// (through cuts, reloads, navigation and second tabs), Stop, honest waits.
import { HttpError, NeedsReconnect } from "./transport.js";
import { ReplyView, messageItem, renderStored } from "./reply.js";

const DOUBLE_SEND_MS = 300;
const newId = () => (crypto.randomUUID ? crypto.randomUUID().replaceAll("-", "") : String(Date.now()) + Math.random().toString(16).slice(2));

export class ChatPane {
  // ui: {messages, input, send, stop, status, reconnect}; store: where the running reply is remembered
  // (sessionStorage: it survives a reload or the next page of the same tab).
  constructor({ transport, ui, store = sessionStorage, storeKey = "gima.running", onChange = () => {} }) {
    this.transport = transport;
    this.ui = ui;
    this.store = store;
    this.storeKey = storeKey;
    this.onChange = onChange;
    this.chatId = null;
    this.streaming = null; // {messageId, view, abort}
    this.lastSend = { text: "", at: 0 };
    ui.send.addEventListener("click", (e) => { e.preventDefault(); this.send(); });
    // Stop takes Send's place while a reply streams, so a double click on Send lands its second click on Stop:
    // that click (detail 2) is not a request to stop the reply it just started.
    ui.stop.addEventListener("click", (e) => { if (e.detail <= 1) this.stop(); });
    ui.reconnect.addEventListener("click", () => this.reconnect());
    ui.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); this.send(); }
      else if (e.key === "Escape" && this.streaming) { e.preventDefault(); this.stop(); }
    });
    transport.onWait = (seconds) => this.say(seconds > 0 ? `Busy: try again in ${seconds} s…` : "");
  }

  say(text) { this.ui.status.textContent = text; }

  setStreaming(on) {
    this.ui.send.hidden = on;
    this.ui.send.disabled = on;
    this.ui.stop.hidden = !on;
  }

  remember(running) {
    if (running) this.store.setItem(this.storeKey, JSON.stringify(running));
    else this.store.removeItem(this.storeKey);
  }

  recalled() {
    try { return JSON.parse(this.store.getItem(this.storeKey) || "null"); } catch { return null; }
  }

  clear() {
    this.abortFollow();
    this.chatId = null;
    this.ui.messages.replaceChildren();
  }

  abortFollow() {
    this.streaming?.abort.abort();
    this.streaming = null;
    this.setStreaming(false);
  }

  // Show a chat's history; a reply still running (another tab, a reload, the page before) is followed from its start.
  async open(chatId) {
    this.abortFollow();
    this.chatId = chatId;
    const { messages } = await this.transport.json(`/api/chats/${encodeURIComponent(chatId)}/messages`);
    this.ui.messages.replaceChildren(...messages.map(renderStored));
    const last = messages[messages.length - 1];
    if (last?.role === "assistant" && last.status === "streaming") {
      const item = this.ui.messages.lastElementChild;
      item.replaceChildren();
      await this.followReply(last.id, new ReplyView(item), null, 0);
    }
  }

  // After a reload or a navigation: the tab's running reply, if it had one.
  async resume() {
    const running = this.recalled();
    if (!running?.chatId) return false;
    await this.open(running.chatId).catch((error) => this.say(error.message));
    this.remember(null);
    return true;
  }

  async send() {
    const content = this.ui.input.value.trim();
    if (!content || this.streaming) return;
    const now = performance.now();
    if (content === this.lastSend.text && now - this.lastSend.at < DOUBLE_SEND_MS) return; // a double click
    this.lastSend = { text: content, at: now };
    this.ui.input.value = "";
    const question = messageItem("user");
    question.textContent = content;
    const answer = messageItem("assistant");
    this.ui.messages.append(question, answer);
    const messageId = newId();
    const body = { content, messageId, ...(this.chatId ? { chatId: this.chatId } : {}) };
    const view = new ReplyView(answer);
    this.remember({ chatId: this.chatId, messageId });
    this.setStreaming(true);
    this.say("thinking…");
    let resp;
    try {
      resp = await this.transport.request("/api/chat/stream", { method: "POST", body, stream: true });
    } catch (error) {
      this.setStreaming(false);
      this.remember(null);
      view.setStatus("error", error instanceof HttpError && error.retryAfterS
        ? `try again in ${error.retryAfterS} s` : error.message);
      this.say(error instanceof HttpError && error.retryAfterS ? `Busy: try again in ${error.retryAfterS} s` : error.message);
      return;
    }
    await this.followReply(messageId, view, resp, 0);
  }

  async followReply(messageId, view, resp, lastEventId) {
    const abort = new AbortController();
    this.streaming = { messageId, view, abort, lastEventId };
    this.setStreaming(true);
    this.ui.reconnect.hidden = true;
    const running = this.streaming;
    try {
      await this.transport.follow(resp, () => messageId, {
        lastEventId,
        signal: abort.signal,
        onRetry: () => this.say("connection lost: reconnecting…"),
        onEvent: (ev) => {
          running.lastEventId = ev.id ?? running.lastEventId;
          if (ev.name === "meta" && !this.chatId) {
            this.chatId = ev.data.chatId;
            this.remember({ chatId: this.chatId, messageId });
            this.onChange(this.chatId);
          }
          view.apply(ev);
          this.say(ev.name === "agent" && ev.data.phase === "start" ? `${ev.data.agent} is working…` : "");
          this.ui.messages.scrollTop = this.ui.messages.scrollHeight;
        },
      });
      this.say(view.item.dataset.status === "complete" ? "" : this.ui.status.textContent);
    } catch (error) {
      if (abort.signal.aborted) return;
      if (error instanceof NeedsReconnect) {
        this.say("The connection was lost.");
        this.ui.reconnect.hidden = false;
        return; // stays "streaming": Reconnect picks it up where it stopped
      }
      view.setStatus("error", error.message);
    }
    if (this.streaming === running) {
      this.streaming = null;
      this.setStreaming(false);
      this.remember(null);
      this.onChange(this.chatId);
    }
  }

  async reconnect() {
    const running = this.streaming;
    if (!running) return;
    this.ui.reconnect.hidden = true;
    this.say("reconnecting…");
    await this.followReply(running.messageId, running.view, null, running.lastEventId);
  }

  async stop() {
    const running = this.streaming;
    if (!running) return;
    await this.transport.request(`/api/chat/streams/${encodeURIComponent(running.messageId)}/cancel`,
      { method: "POST" }).catch((error) => this.say(error.message));
  }
}
