// The page: sign-up / log-in, the chat list, one conversation pane, the alpha import panel.
// ES modules, no build step, no inline script: it runs under the server's strict Content-Security-Policy.
import { Transport } from "./lib/transport.js";
import { ChatPane } from "./lib/chat.js";
import { ImportPanel } from "./lib/import.js";

const $ = (id) => document.getElementById(id);
const transport = new Transport();
let pane;
let importer;

function show(view) {
  $("auth-view").hidden = view !== "auth";
  $("chat-view").hidden = view !== "chat";
}

async function loadChats() {
  const { chats } = await transport.json("/api/chats");
  const list = $("chat-list");
  list.replaceChildren(...chats.map((chat) => {
    const item = document.createElement("li");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "chat-link";
    open.textContent = chat.title;
    open.dataset.chatId = chat.id;
    if (chat.id === pane.chatId) open.setAttribute("aria-current", "true");
    open.addEventListener("click", () => { localStorage.setItem("gima.chat", chat.id); pane.open(chat.id).then(loadChats); });
    item.append(open);
    return item;
  }));
}

async function enter(me) {
  transport.csrf = me.csrfToken || null;
  $("me").textContent = me.user.email;
  show("chat");
  $("import-panel").hidden = !me.canMigrate;
  if (me.canMigrate && !importer) importer = new ImportPanel({ transport, pane, ui: {
    file: $("import-file"), start: $("import-start"), progress: $("import-progress"), status: $("import-status") },
    onImported: () => loadChats() });
  if (!(await pane.resume())) {
    const last = localStorage.getItem("gima.chat");
    if (last) await pane.open(last).catch(() => { localStorage.removeItem("gima.chat"); pane.clear(); });
  }
  await loadChats();
}

async function authenticate(kind) {
  $("auth-error").textContent = "";
  const body = { email: $("email").value, password: $("password").value };
  try {
    await transport.json(`/api/auth/${kind}`, { method: "POST", body });
    await enter(await transport.json("/api/auth/me"));
  } catch (error) {
    $("auth-error").textContent = error.message;
  }
}

function snippetOf(parts) {
  const line = document.createElement("span");
  line.className = "snippet";
  for (const part of parts) {
    const piece = document.createElement(part.match ? "mark" : "span");
    piece.textContent = part.text; // text nodes only: a snippet is never HTML
    line.append(piece);
  }
  return line;
}

async function searchChats(query) {
  const results = $("search-results");
  if (!query.trim()) { results.hidden = true; return; }
  let body;
  try {
    body = await transport.json(`/api/search?q=${encodeURIComponent(query)}`);
  } catch (error) {
    results.replaceChildren(Object.assign(document.createElement("li"), { textContent: error.message }));
    results.hidden = false;
    return;
  }
  results.replaceChildren(...(body.results.length ? body.results.map((hit) => {
    const item = document.createElement("li");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "chat-link search-hit";
    open.append(Object.assign(document.createElement("strong"), { textContent: hit.chatTitle }), snippetOf(hit.snippet));
    open.addEventListener("click", () => { results.hidden = true; pane.open(hit.chatId).then(loadChats); });
    item.append(open);
    return item;
  }) : [Object.assign(document.createElement("li"), { textContent: "No messages found." })]));
  results.hidden = false;
}

document.addEventListener("DOMContentLoaded", async () => {
  pane = new ChatPane({ transport, ui: {
    messages: $("messages"), input: $("content"), send: $("send"), stop: $("stop"), status: $("status"),
    reconnect: $("reconnect") },
    onChange: (chatId) => { if (chatId) localStorage.setItem("gima.chat", chatId); loadChats().catch(() => {}); } });
  $("auth-form").addEventListener("submit", (e) => { e.preventDefault(); authenticate("login"); });
  $("signup").addEventListener("click", () => authenticate("signup"));
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); pane.send(); });
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); searchChats($("search").value); });
  $("new-chat").addEventListener("click", () => { localStorage.removeItem("gima.chat"); pane.clear(); loadChats(); });
  $("logout").addEventListener("click", async () => {
    await transport.request("/api/auth/logout", { method: "POST" }).catch(() => {});
    localStorage.removeItem("gima.chat");
    pane.clear();
    show("auth");
  });
  const me = await transport.json("/api/auth/me").catch(() => ({ user: null })); // signed out: 200 {user: null}
  if (me.user) await enter(me); else show("auth");
});
