// A reply as it streams (and as it was stored): one section per agent turn, plain text (never HTML of model
// output), a snapshot replacing everything shown so far.

export function messageItem(role) {
  const item = document.createElement("li");
  item.className = role;
  return item;
}

export class ReplyView {
  constructor(item) {
    this.item = item;
    this.sections = []; // [{agent, text: Element}]
  }

  section(agent) {
    const last = this.sections[this.sections.length - 1];
    if (last && last.agent === agent) return last.text;
    const block = document.createElement("div");
    block.className = "agent";
    block.dataset.agent = agent;
    const label = document.createElement("h3");
    label.className = "agent-name";
    label.textContent = agent;
    const text = document.createElement("div");
    text.className = "agent-text";
    block.append(label, text);
    this.item.append(block);
    this.sections.push({ agent, text });
    return text;
  }

  clear() {
    for (const block of this.item.querySelectorAll(".agent")) block.remove();
    this.sections = [];
  }

  showSections(agents) {
    this.clear();
    for (const { agent, text } of agents) this.section(agent).textContent += text;
  }

  setStatus(status, message) {
    this.item.dataset.status = status;
    this.item.querySelector(".message-status")?.remove();
    if (status !== "complete" && status !== "streaming") {
      const note = document.createElement("p");
      note.className = "message-status";
      note.textContent = message ? `${status}: ${message}` : status;
      this.item.append(note);
    }
  }

  apply(ev) {
    const data = ev.data;
    if (ev.name === "meta") {
      this.item.dataset.messageId = data.messageId;
      this.setStatus("streaming");
    } else if (ev.name === "agent" && data.phase === "start") {
      this.section(data.agent);
    } else if (ev.name === "delta") {
      this.section(data.agent || "assistant").textContent += data.text;
    } else if (ev.name === "snapshot") {
      this.showSections(data.agents?.length ? data.agents : [{ agent: "assistant", text: data.content }]);
    } else if (ev.name === "done") {
      this.setStatus("complete");
    } else if (ev.name === "error") {
      this.setStatus(data.code, data.message);
    }
  }

  text() {
    return this.sections.map((s) => s.text.textContent).join("");
  }
}

export function renderStored(message) {
  const item = messageItem(message.role);
  item.dataset.messageId = message.id;
  if (message.role === "user") {
    item.textContent = message.content;
    return item;
  }
  const view = new ReplyView(item);
  view.showSections(message.agents?.length ? message.agents : [{ agent: "assistant", text: message.content }]);
  view.setStatus(message.status);
  return item;
}
