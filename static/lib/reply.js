// A reply as it streams (and as it was stored): one section per agent turn, a snapshot replacing everything
// shown so far. Text is shown as text until it looks like Markdown; then the sanitizing renderer (markdown.js,
// loaded on demand, so a widget whose replies are plain never fetches it) takes over the section.
import { t } from "./i18n.js";

const MARKDOWN_HINT = /[*_`#>|~[\]<]|^\s*(?:[-+]|\d+[.)])\s/m;
let markdownModule = null;
const loadMarkdown = () => (markdownModule ??= import("./markdown.js"));

export function messageItem(role) {
  const item = document.createElement("li");
  item.className = role;
  return item;
}

// One agent's text: plain text nodes until Markdown appears, then a MarkdownView fed from the text so far.
class Section {
  constructor(el) {
    this.el = el;
    this.text = "";
    this.node = el.appendChild(document.createTextNode(""));
    this.markdown = null;
    this.upgrading = false;
  }

  append(text) {
    this.text += text;
    if (this.markdown) { this.markdown.append(text); return; }
    this.node.appendData(text);
    // Only the new text (and the line it continues) is looked at: the whole reply per token would be quadratic.
    if (!this.upgrading && MARKDOWN_HINT.test(this.text.slice(-(text.length + 32)))) {
      this.upgrading = true;
      loadMarkdown().then(({ MarkdownView }) => {
        this.markdown = new MarkdownView(this.el);
        this.markdown.set(this.text);
      }).catch(() => { /* the renderer could not load: the text stays plain, still whole */ });
    }
  }

  flush() { this.markdown?.flush(); }
}

export class ReplyView {
  // actions: {readAloud(text, button)} or null when the server has no voice; labels: model id -> its label.
  constructor(item, { actions = null, labels = new Map() } = {}) {
    this.item = item;
    this.actions = actions;
    this.labels = labels;
    this.sections = []; // [{agent, section: Section}]
  }

  section(agent) {
    const last = this.sections[this.sections.length - 1];
    if (last && last.agent === agent) return last.section;
    const block = document.createElement("div");
    block.className = "agent";
    block.dataset.agent = agent;
    const label = document.createElement("h3");
    label.className = "agent-name";
    label.textContent = agent;
    const text = document.createElement("div");
    text.className = "agent-text";
    block.append(label, text);
    const after = this.item.querySelector(":scope > .message-status, :scope > .model-note, :scope > .message-actions");
    if (after) after.before(block); else this.item.append(block);
    const section = new Section(text);
    this.sections.push({ agent, section });
    return section;
  }

  clear() {
    for (const block of this.item.querySelectorAll(".agent")) block.remove();
    this.sections = [];
  }

  showSections(agents) {
    this.clear();
    for (const { agent, text } of agents) this.section(agent).append(text);
  }

  setStatus(status, message) {
    this.item.dataset.status = status;
    this.item.querySelector(".message-status")?.remove();
    if (status !== "complete" && status !== "streaming") {
      const note = document.createElement("p");
      note.className = "message-status";
      const name = t(`status_${status}`).replace(/^status_/, ""); // an end code with no name of its own as it is
      note.textContent = message ? `${name}: ${message}` : name;
      this.item.append(note);
    }
    if (status !== "streaming") this.finish();
  }

  // Which model answered, and whether a fallback took over from the one asked for.
  setModel(model, fallbackFrom, reason) {
    if (!model) return;
    let note = this.item.querySelector(".model-note");
    if (!note) {
      note = document.createElement("p");
      note.className = "model-note";
      const actions = this.item.querySelector(":scope > .message-actions");
      if (actions) actions.before(note); else this.item.append(note);
    }
    this.item.dataset.model = model;
    const name = (id) => this.labels.get(id) || id;
    note.textContent = fallbackFrom ? t("answeredByFallback", { model: name(model), from: name(fallbackFrom), reason: reason || "" })
      : t("answeredBy", { model: name(model) });
  }

  finish() {
    for (const { section } of this.sections) section.flush();
    if (this.item.querySelector(".message-actions") || !this.text()) return;
    const actions = document.createElement("div");
    actions.className = "message-actions";
    const copy = button(t("copyReply"), "copy-reply");
    copy.addEventListener("click", () => navigator.clipboard.writeText(this.text())
      .then(() => { copy.textContent = t("copied"); }, () => { copy.textContent = t("copyFailed"); })
      .finally(() => setTimeout(() => { copy.textContent = t("copyReply"); }, 1500)));
    actions.append(copy);
    if (this.actions?.readAloud) {
      const speak = button(t("readAloud"), "read-aloud");
      speak.addEventListener("click", () => this.actions.readAloud(this.text(), speak, this.item));
      actions.append(speak);
    }
    this.item.append(actions);
  }

  apply(ev) {
    const data = ev.data;
    if (ev.name === "meta") {
      this.item.dataset.messageId = data.messageId;
      this.setStatus("streaming");
      this.setModel(data.model);
    } else if (ev.name === "model") {
      this.setModel(data.model, data.fallbackFrom, data.reason);
    } else if (ev.name === "agent" && data.phase === "start") {
      this.section(data.agent);
    } else if (ev.name === "delta") {
      this.section(data.agent || "assistant").append(data.text);
    } else if (ev.name === "snapshot") {
      this.showSections(data.agents?.length ? data.agents : [{ agent: "assistant", text: data.content }]);
    } else if (ev.name === "done") {
      this.setStatus("complete");
    } else if (ev.name === "error") {
      this.setStatus(data.code, data.message);
    }
  }

  text() {
    return this.sections.map((s) => s.section.text).join("");
  }
}

function button(label, className) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = className;
  el.textContent = label;
  return el;
}

export function renderStored(message, options) {
  const item = messageItem(message.role);
  item.dataset.messageId = message.id;
  if (message.role === "user") {
    const text = document.createElement("div");
    text.className = "user-text";
    text.textContent = message.content;
    item.append(text);
    return item;
  }
  const view = new ReplyView(item, options);
  view.showSections(message.agents?.length ? message.agents : [{ agent: "assistant", text: message.content }]);
  view.setModel(message.model);
  view.setStatus(message.status);
  return item;
}
