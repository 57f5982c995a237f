// One conversation pane, shared by the page and the widget: send discipline, replies followed to their end
// (through cuts, reloads, navigation and second tabs), Stop, honest waits.
import { HttpError, NeedsReconnect } from "./transport.js";
import { ReplyView, messageItem, renderStored } from "./reply.js";
import { t } from "./i18n.js";
import { VoiceInput, readAloud } from "./voice.js";

const DOUBLE_SEND_MS = 300;
const MAX_REMEMBERED_CHOICES = 200; // model choices kept per chat, oldest forgotten first
const newId = () => (crypto.randomUUID ? crypto.randomUUID().replaceAll("-", "") : String(Date.now()) + Math.random().toString(16).slice(2));

export class ChatPane {
  // ui: {messages, scroller, empty, input, send, stop, status, reconnect, model?, record?}; store: where the
  // running reply is remembered (sessionStorage: it survives a reload or the next page of the same tab).
  constructor({ transport, ui, store = sessionStorage, storeKey = "gima.running", onChange = () => {} }) {
    this.transport = transport;
    this.ui = ui;
    this.store = store;
    this.storeKey = storeKey;
    this.choicesKey = `${storeKey}.models`;
    this.onChange = onChange;
    this.voice = null;
    this.replyOptions = { actions: null, labels: new Map() };
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
    transport.onWait = (seconds) => this.say(seconds > 0 ? t("busy", { s: seconds }) : "");
    ui.model?.addEventListener("change", () => this.rememberModel());
    new MutationObserver(() => this.showEmptyState()).observe(ui.messages, { childList: true });
    this.showEmptyState();
  }

  say(text) { this.ui.status.textContent = text; }

  showEmptyState() {
    if (this.ui.empty) this.ui.empty.hidden = this.ui.messages.childElementCount > 0;
  }

  // The server's models (GET /api/models): a picker when there is more than one; voice when it is configured.
  async configure() {
    const { models, voice } = await this.transport.json("/api/models");
    for (const model of models) this.replyOptions.labels.set(model.id, model.label || model.id);
    const picker = this.ui.model;
    if (picker) {
      picker.replaceChildren(...models.map((model) => Object.assign(document.createElement("option"),
        { value: model.id, textContent: model.label || model.id, defaultSelected: !!model.default })));
      picker.closest("[data-picker]")?.toggleAttribute("hidden", models.length < 2);
      this.restoreModel();
    }
    if (voice && this.ui.record) {
      this.voice ??= new VoiceInput({ transport: this.transport, ui: { record: this.ui.record, input: this.ui.input },
        say: (text) => this.say(text) });
      this.ui.record.hidden = false;
      this.replyOptions.actions = { readAloud: (text, button) => readAloud(this.transport, text, button, (x) => this.say(x)) };
    }
  }

  choices() {
    try { return JSON.parse(localStorage.getItem(this.choicesKey) || "{}"); } catch { return {}; }
  }

  rememberModel() {
    if (!this.chatId || !this.ui.model) return;
    const choices = this.choices();
    delete choices[this.chatId];
    choices[this.chatId] = this.ui.model.value;
    const ids = Object.keys(choices);
    for (const old of ids.slice(0, Math.max(0, ids.length - MAX_REMEMBERED_CHOICES))) delete choices[old];
    try { localStorage.setItem(this.choicesKey, JSON.stringify(choices)); } catch { /* storage full: not kept */ }
  }

  // A chat's own choice; a new chat starts on the server's default.
  restoreModel() {
    const picker = this.ui.model;
    if (!picker?.options.length) return;
    const chosen = this.chatId ? this.choices()[this.chatId] : null;
    const fallback = [...picker.options].find((option) => option.defaultSelected) ?? picker.options[0];
    picker.value = [...picker.options].some((option) => option.value === chosen) ? chosen : fallback.value;
  }

  chosenModel() {
    const picker = this.ui.model;
    return picker && !picker.closest("[data-picker]")?.hidden && picker.value ? picker.value : null;
  }

  // At most once a frame: reading scrollHeight after every token would force a layout per token.
  scrollToEnd() {
    this.scrollFrame ||= requestAnimationFrame(() => {
      this.scrollFrame = 0;
      const scroller = this.ui.scroller ?? this.ui.messages;
      scroller.scrollTop = scroller.scrollHeight;
    });
  }

  // Edit (the last question, back in the box) and Regenerate (the last question asked again) on the last exchange.
  lastExchangeActions() {
    for (const old of this.ui.messages.querySelectorAll(".edit-last, .regenerate")) old.remove();
    if (this.streaming) return;
    const question = [...this.ui.messages.querySelectorAll(":scope > li.user")].pop();
    if (!question) return;
    const text = question.querySelector(".user-text")?.textContent ?? "";
    const edit = Object.assign(document.createElement("button"), { type: "button", className: "edit-last", textContent: t("edit") });
    edit.addEventListener("click", () => { this.ui.input.value = text; this.ui.input.focus(); });
    question.append(edit);
    const answer = question.nextElementSibling;
    const bar = answer?.querySelector(".message-actions");
    if (bar) {
      const again = Object.assign(document.createElement("button"), { type: "button", className: "regenerate", textContent: t("regenerate") });
      again.addEventListener("click", () => this.send(text));
      bar.append(again);
    }
  }

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
    this.restoreModel();
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
    this.restoreModel();
    const { messages } = await this.transport.json(`/api/chats/${encodeURIComponent(chatId)}/messages`);
    this.ui.messages.replaceChildren(...messages.map((message) => renderStored(message, this.replyOptions)));
    const last = messages[messages.length - 1];
    if (last?.role === "assistant" && last.status === "streaming") {
      const item = this.ui.messages.lastElementChild;
      item.replaceChildren();
      await this.followReply(last.id, new ReplyView(item, this.replyOptions), null, 0);
    } else {
      this.lastExchangeActions();
    }
    this.scrollToEnd();
  }

  // After a reload or a navigation: the tab's running reply, if it had one.
  async resume() {
    const running = this.recalled();
    if (!running?.chatId) return false;
    await this.open(running.chatId).catch((error) => this.say(error.message));
    this.remember(null);
    return true;
  }

  // Send the Message box's text, or `again` (Regenerate: the last question asked once more, as a new turn).
  async send(again) {
    const content = (typeof again === "string" ? again : this.ui.input.value).trim();
    if (!content || this.streaming) return;
    const now = performance.now();
    if (content === this.lastSend.text && now - this.lastSend.at < DOUBLE_SEND_MS) return; // a double click
    this.lastSend = { text: content, at: now };
    if (typeof again !== "string") this.ui.input.value = "";
    for (const old of this.ui.messages.querySelectorAll(".edit-last, .regenerate")) old.remove();
    const question = messageItem("user");
    question.append(Object.assign(document.createElement("div"), { className: "user-text", textContent: content }));
    const answer = messageItem("assistant");
    this.ui.messages.append(question, answer);
    this.scrollToEnd();
    const messageId = newId();
    const model = this.chosenModel();
    const body = { content, messageId, ...(this.chatId ? { chatId: this.chatId } : {}), ...(model ? { model } : {}) };
    const view = new ReplyView(answer, this.replyOptions);
    this.remember({ chatId: this.chatId, messageId });
    this.setStreaming(true);
    this.say(t("thinking"));
    let resp;
    try {
      resp = await this.transport.request("/api/chat/stream", { method: "POST", body, stream: true });
    } catch (error) {
      this.setStreaming(false);
      this.remember(null);
      view.setStatus("error", error instanceof HttpError && error.retryAfterS
        ? t("tryAgain", { s: error.retryAfterS }) : error.message);
      this.say(error instanceof HttpError && error.retryAfterS ? t("busy", { s: error.retryAfterS }) : error.message);
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
        onRetry: () => this.say(t("retrying")),
        onEvent: (ev) => {
          running.lastEventId = ev.id ?? running.lastEventId;
          if (ev.name === "meta" && !this.chatId) {
            this.chatId = ev.data.chatId;
            this.remember({ chatId: this.chatId, messageId });
            this.rememberModel();
            this.onChange(this.chatId);
          }
          view.apply(ev);
          this.say(ev.name === "agent" && ev.data.phase === "start" ? t("working", { agent: ev.data.agent }) : "");
          this.scrollToEnd();
        },
      });
      this.say(view.item.dataset.status === "complete" ? "" : this.ui.status.textContent);
    } catch (error) {
      if (abort.signal.aborted) return;
      if (error instanceof NeedsReconnect) {
        this.say(t("lost"));
        this.ui.reconnect.hidden = false;
        return; // stays "streaming": Reconnect picks it up where it stopped
      }
      view.setStatus("error", error.message);
    }
    if (this.streaming === running) {
      this.streaming = null;
      this.setStreaming(false);
      this.remember(null);
      this.lastExchangeActions();
      this.onChange(this.chatId);
    }
  }

  async reconnect() {
    const running = this.streaming;
    if (!running) return;
    this.ui.reconnect.hidden = true;
    this.say(t("reconnecting"));
    await this.followReply(running.messageId, running.view, null, running.lastEventId);
  }

  async stop() {
    const running = this.streaming;
    if (!running) return;
    await this.transport.request(`/api/chat/streams/${encodeURIComponent(running.messageId)}/cancel`,
      { method: "POST" }).catch((error) => this.say(error.message));
  }
}
