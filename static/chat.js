// gima minimal chat page: sign up / log in, chats, a streamed multi-agent reply, Stop.
// No build step and no inline script, so the page runs under a strict Content-Security-Policy.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { chatId: null, messageId: null };

async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options, headers: { ...(options.headers || {}) } };
  if (options.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const resp = await fetch(path, init);
  if (!resp.ok && resp.status !== 204 && !(options.stream && resp.ok)) {
    let message = `${resp.status}`;
    try { message = (await resp.json()).error.message; } catch (_) { /* not JSON */ }
    const error = new Error(message);
    error.status = resp.status;
    throw error;
  }
  return resp;
}

function show(view) {
  $("auth-view").hidden = view !== "auth";
  $("chat-view").hidden = view !== "chat";
}

async function start() {
  try {
    const me = await (await api("/api/auth/me")).json();
    await enterChat(me.user);
  } catch (_) {
    show("auth");
  }
}

async function authenticate(kind) {
  $("auth-error").textContent = "";
  const body = { email: $("email").value, password: $("password").value };
  try {
    const result = await (await api(`/api/auth/${kind}`, { method: "POST", body })).json();
    await enterChat(result.user);
  } catch (error) {
    $("auth-error").textContent = error.message;
  }
}

async function enterChat(user) {
  $("me").textContent = user.email;
  show("chat");
  await loadChats();
}

async function loadChats() {
  const { chats } = await (await api("/api/chats")).json();
  const list = $("chat-list");
  list.replaceChildren();
  for (const chat of chats) {
    const item = document.createElement("li");
    item.textContent = chat.title;
    item.dataset.chatId = chat.id;
    item.classList.toggle("current", chat.id === state.chatId);
    item.addEventListener("click", () => openChat(chat.id));
    list.append(item);
  }
}

async function openChat(chatId) {
  state.chatId = chatId;
  const { messages } = await (await api(`/api/chats/${encodeURIComponent(chatId)}/messages`)).json();
  $("messages").replaceChildren(...messages.map(renderStoredMessage));
  await loadChats();
}

function messageItem(role) {
  const item = document.createElement("li");
  item.className = role;
  return item;
}

function renderStoredMessage(message) {
  const item = messageItem(message.role);
  item.append(document.createTextNode(message.content));
  if (message.role === "assistant" && message.status !== "complete") addStatus(item, message.status);
  return item;
}

function addStatus(item, text) {
  const status = document.createElement("span");
  status.className = "message-status";
  status.textContent = text;
  item.append(status);
}

// Parses text/event-stream frames out of a fetch body (EventSource cannot POST).
async function* sseEvents(resp) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { name: "message", data: [] };
      for (const line of frame.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event.name = text;
        else if (field === "data") event.data.push(text);
        else if (field === "id") event.id = text;
      }
      if (event.data.length) yield { name: event.name, id: event.id, data: JSON.parse(event.data.join("\n")) };
    }
  }
}

function agentBlock(item, name) {
  const block = document.createElement("div");
  block.className = "agent";
  block.dataset.agent = name;
  const label = document.createElement("span");
  label.className = "agent-name";
  label.textContent = name;
  const text = document.createElement("span");
  text.className = "agent-text";
  block.append(label, text);
  item.append(block);
  return text;
}

function replaceWithSnapshot(answer, blocks, snapshot) {
  answer.querySelectorAll(".agent").forEach((block) => block.remove());
  blocks.clear();
  for (const section of snapshot.agents) {
    const target = blocks.get(section.agent) || agentBlock(answer, section.agent);
    blocks.set(section.agent, target);
    target.textContent += section.text;
  }
}

async function send(event) {
  event.preventDefault();
  const content = $("content").value.trim();
  if (!content) return;
  $("content").value = "";
  const messages = $("messages");
  const question = messageItem("user");
  question.textContent = content;
  const answer = messageItem("assistant");
  messages.append(question, answer);
  const body = { content };
  if (state.chatId) body.chatId = state.chatId;
  $("stop").hidden = false;
  $("status").textContent = "thinking…";
  const blocks = new Map();
  try {
    const resp = await api("/api/chat/stream", { method: "POST", body, stream: true });
    for await (const ev of sseEvents(resp)) {
      if (ev.name === "meta") {
        state.chatId = ev.data.chatId;
        state.messageId = ev.data.messageId;
        answer.dataset.messageId = ev.data.messageId;
      } else if (ev.name === "agent" && ev.data.phase === "start") {
        blocks.set(ev.data.agent, agentBlock(answer, ev.data.agent));
        $("status").textContent = `${ev.data.agent} is working…`;
      } else if (ev.name === "snapshot") {
        // Events the server no longer holds: its snapshot is the whole text so far, so it replaces ours.
        replaceWithSnapshot(answer, blocks, ev.data);
      } else if (ev.name === "delta") {
        const target = blocks.get(ev.data.agent) || agentBlock(answer, ev.data.agent);
        blocks.set(ev.data.agent, target);
        target.textContent += ev.data.text;
        messages.scrollTop = messages.scrollHeight;
      } else if (ev.name === "done") {
        answer.dataset.status = "complete";
        $("status").textContent = "";
      } else if (ev.name === "error") {
        answer.dataset.status = ev.data.code;
        addStatus(answer, ev.data.code);
        $("status").textContent = ev.data.message;
      }
    }
  } catch (error) {
    addStatus(answer, "error");
    $("status").textContent = error.message;
  } finally {
    $("stop").hidden = true;
    state.messageId = null;
    await loadChats().catch(() => {});
  }
}

async function stop() {
  if (!state.messageId) return;
  await api(`/api/chat/streams/${encodeURIComponent(state.messageId)}/cancel`, { method: "POST" }).catch(() => {});
}

document.addEventListener("DOMContentLoaded", () => {
  $("auth-form").addEventListener("submit", (e) => { e.preventDefault(); authenticate("login"); });
  $("signup").addEventListener("click", () => authenticate("signup"));
  $("composer").addEventListener("submit", send);
  $("content").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", () => {
    state.chatId = null;
    $("messages").replaceChildren();
    loadChats();
  });
  $("logout").addEventListener("click", async () => {
    await api("/api/auth/logout", { method: "POST" }).catch(() => {});
    state.chatId = null;
    $("messages").replaceChildren();
    show("auth");
  });
  start();
});
