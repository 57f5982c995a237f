// The page: sign-up / log-in, the chat list, one conversation pane, the alpha import panel.
// ES modules, no build step, no inline script: it runs under the server's strict Content-Security-Policy.
import { Transport } from "./lib/transport.js";
import { ChatPane } from "./lib/chat.js";
import { ImportPanel } from "./lib/import.js";
import { language, languageSwitch, onLanguage, t, translate } from "./lib/i18n.js";

const $ = (id) => document.getElementById(id);
const transport = new Transport();
const NARROW = window.matchMedia("(max-width: 640px)");
let pane;
let importer;
let chats = [];

function show(view) {
  $("auth-view").hidden = view !== "auth";
  $("chat-view").hidden = view !== "chat";
}

function localize() {
  document.documentElement.lang = language();
  translate(document);
}

// Narrow screens: the chat list sits behind the "Chats" button.
function showSidebar(open) {
  $("chat-view").classList.toggle("sidebar-open", open);
  $("toggle-sidebar").setAttribute("aria-expanded", String(open));
}

async function openChat(chatId) {
  localStorage.setItem("gima.chat", chatId);
  if (NARROW.matches) showSidebar(false);
  await pane.open(chatId);
  await loadChats();
  $("content").focus();
}

function chatRow(chat) {
  const item = document.createElement("li");
  const open = document.createElement("button");
  open.type = "button";
  open.className = "chat-link";
  open.textContent = chat.title;
  open.dataset.chatId = chat.id;
  open.addEventListener("click", () => openChat(chat.id));
  item.append(open);
  if (chat.id !== pane.chatId) return item;
  open.setAttribute("aria-current", "true");
  const actions = document.createElement("div");
  actions.className = "chat-actions";
  actions.setAttribute("role", "group");
  actions.setAttribute("aria-label", t("chatActions", { title: chat.title }));
  const rename = Object.assign(document.createElement("button"), { type: "button", textContent: t("rename") });
  rename.addEventListener("click", () => renameInPlace(item, chat));
  const remove = Object.assign(document.createElement("button"), { type: "button", textContent: t("delete") });
  remove.addEventListener("click", () => deleteChat(chat));
  actions.append(rename, remove);
  item.append(actions);
  return item;
}

function renameInPlace(item, chat) {
  const form = document.createElement("form");
  form.className = "rename-form";
  const input = Object.assign(document.createElement("input"), { value: chat.title, maxLength: 200, required: true });
  input.setAttribute("aria-label", t("renamePrompt", { title: chat.title }));
  form.append(input);
  const done = () => loadChats().then(() => $("chat-list").querySelector(`[data-chat-id="${chat.id}"]`)?.focus());
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const title = input.value.trim();
    if (!title) return;
    try {
      await transport.json(`/api/chats/${encodeURIComponent(chat.id)}`, { method: "PATCH", body: { title } });
    } catch (error) {
      $("status").textContent = error.message;
    }
    done();
  });
  input.addEventListener("keydown", (e) => { if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); done(); } });
  item.replaceChildren(form);
  input.focus();
  input.select();
}

async function deleteChat(chat) {
  if (!window.confirm(t("deleteConfirm", { title: chat.title }))) return;
  try {
    await transport.request(`/api/chats/${encodeURIComponent(chat.id)}`, { method: "DELETE" });
  } catch (error) {
    $("status").textContent = error.message;
    return;
  }
  localStorage.removeItem("gima.chat");
  pane.clear();
  await loadChats();
  $("new-chat").focus();
}

async function loadChats() {
  ({ chats } = await transport.json("/api/chats"));
  $("chat-list").replaceChildren(...chats.map(chatRow));
}

async function enter(me) {
  transport.csrf = me.csrfToken || null;
  $("me").textContent = me.user.email;
  show("chat");
  $("import-panel").hidden = !me.canMigrate;
  if (me.canMigrate && !importer) importer = new ImportPanel({ transport, pane, ui: {
    file: $("import-file"), start: $("import-start"), progress: $("import-progress"), status: $("import-status") },
    onImported: () => loadChats() });
  await pane.configure().catch((error) => { $("status").textContent = error.message; });
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
    open.addEventListener("click", () => { results.hidden = true; openChat(hit.chatId); });
    item.append(open);
    return item;
  }) : [Object.assign(document.createElement("li"), { textContent: t("noResults") })]));
  results.hidden = false;
}

document.addEventListener("DOMContentLoaded", async () => {
  localize();
  languageSwitch($("language"));
  languageSwitch($("auth-language"));
  onLanguage(() => {
    localize();
    if (!$("chat-view").hidden) {
      loadChats().catch(() => {});
      if (pane.chatId && !pane.streaming) pane.open(pane.chatId).catch(() => {});
    }
  });
  pane = new ChatPane({ transport, ui: {
    messages: $("messages"), scroller: $("log"), empty: $("empty-state"), input: $("content"), send: $("send"),
    stop: $("stop"), status: $("status"), reconnect: $("reconnect"), model: $("model"), record: $("record") },
    onChange: (chatId) => { if (chatId) localStorage.setItem("gima.chat", chatId); loadChats().catch(() => {}); } });
  $("auth-form").addEventListener("submit", (e) => { e.preventDefault(); authenticate("login"); });
  $("signup").addEventListener("click", () => authenticate("signup"));
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); pane.send(); });
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); searchChats($("search").value); });
  $("new-chat").addEventListener("click", () => {
    localStorage.removeItem("gima.chat");
    pane.clear();
    loadChats();
    if (NARROW.matches) showSidebar(false);
    $("content").focus();
  });
  $("toggle-sidebar").addEventListener("click", () => showSidebar(!$("chat-view").classList.contains("sidebar-open")));
  // Escape stops the running reply wherever the focus is (and closes the chat list on a narrow screen).
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || e.defaultPrevented) return;
    if (pane.streaming) { e.preventDefault(); pane.stop(); }
    else if ($("chat-view").classList.contains("sidebar-open")) { showSidebar(false); $("toggle-sidebar").focus(); }
  });
  $("logout").addEventListener("click", async () => {
    await transport.request("/api/auth/logout", { method: "POST" }).catch(() => {});
    localStorage.removeItem("gima.chat");
    pane.clear();
    show("auth");
  });
  const me = await transport.json("/api/auth/me").catch(() => ({ user: null })); // signed out: 200 {user: null}
  if (me.user) await enter(me); else show("auth");
});
