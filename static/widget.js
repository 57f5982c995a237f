// The embeddable chat: <script src="https://chat.example/static/widget.js" data-gima-server="https://chat.example" async>
// A launcher button and a panel in a shadow root (the host page's CSS cannot reach in, ours cannot leak out);
// one global, GimaChat. Identity: a host-site JWT (data-gima-token or GimaChat.setToken) or a guest session;
// the token lives in this widget's storage, not in a cookie, so blocked third-party cookies do not matter.
// A reply running when the visitor moves to another page of the site is picked up there (sessionStorage).
(() => {
  if (window.GimaChat) return;
  const script = document.currentScript;
  const server = (script?.dataset.gimaServer || new URL(script.src).origin).replace(/\/+$/, "");
  const KEYS = { token: "gima.widget.token", chat: "gima.widget.chat", running: "gima.widget.running", open: "gima.widget.open" };
  let hostToken = script?.dataset.gimaToken || sessionStorage.getItem(KEYS.token + ".host") || null;
  let guestToken = localStorage.getItem(KEYS.token);
  let pane = null;
  let loading = null;
  const channel = "BroadcastChannel" in window ? new BroadcastChannel("gima-widget") : null;

  // English until i18n.js arrives (a few milliseconds), then the visitor's language (data-gima-lang, else theirs).
  const EN = { openChat: "Open chat", closeChat: "Close chat", connecting: "Connecting…",
               noGuests: "chat is not open to guests here", signInFailed: "sign-in failed ({status})" };
  let t = (key, vars = {}) => EN[key].replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
  const css = `
    :host { --fg: #1d232a; --muted: #55606b; --line: #c9d0d6; --accent: #2459c2; --link: #1f4fb0; --surface: #fff;
      --user: #eef3fb; --code: #f1f3f5; }
    @media (prefers-color-scheme: dark) { :host { --fg: #e6e9ec; --muted: #a7b0ba; --line: #3a434d; --accent: #2f6fde;
      --link: #8fb4ff; --surface: #1d232a; --user: #1f2a3a; --code: #262d35; } }
    .root { all: initial; font: 14px/1.45 system-ui, sans-serif; color: var(--fg); }
    .launcher { all: initial; position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; cursor: pointer;
      background: var(--accent); color: #fff; font: 600 14px system-ui, sans-serif; padding: 12px 18px; border-radius: 24px;
      box-shadow: 0 4px 14px rgba(0,0,0,.2); }
    .panel { position: fixed; right: 20px; bottom: 76px; z-index: 2147483000; width: min(380px, calc(100vw - 40px));
      height: min(560px, calc(100vh - 110px)); display: flex; flex-direction: column; background: var(--surface);
      color: var(--fg); border: 1px solid var(--line); border-radius: 12px; box-shadow: 0 8px 30px rgba(0,0,0,.18); overflow: hidden; }
    .panel[hidden], [hidden] { display: none !important; }
    :focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
    a { color: var(--link); }
    header { display: flex; justify-content: space-between; align-items: center; gap: 6px; padding: 8px 12px; border-bottom: 1px solid var(--line); font-weight: 600; }
    header select { font: inherit; font-weight: normal; color: var(--fg); background: var(--surface); border: 1px solid var(--line); border-radius: 6px; max-width: 150px; }
    .picker { display: flex; gap: 4px; align-items: center; margin-left: auto; font-weight: normal; font-size: 12px; }
    .log { flex: 1; overflow: auto; padding: 10px; }
    .empty { color: var(--muted); text-align: center; margin: 40px 10px; }
    ol { list-style: none; margin: 0; padding: 0; }
    li { margin: 0 0 10px; padding: 8px 10px; border-radius: 8px; border: 1px solid var(--line); color: var(--fg); background: var(--surface); overflow-wrap: anywhere; }
    li.user { background: var(--user); }
    .user-text, .agent-text:not(.markdown) { white-space: pre-wrap; }
    .agent-name { margin: 4px 0 0; font-size: 11px; font-weight: 600; text-transform: uppercase; color: var(--muted); }
    .message-status, .model-note { margin: 4px 0 0; font-size: 12px; color: var(--muted); }
    .message-actions { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 6px; }
    .message-actions button, .edit-last, .copy-code { font-size: 12px; padding: 2px 8px; }
    .markdown p, .markdown ul, .markdown ol, .markdown table { margin: 6px 0; }
    .markdown ol, .markdown ul { padding-left: 20px; }
    .markdown li { border: 0; padding: 0; margin: 0; background: none; }
    .markdown h1, .markdown h2, .markdown h3 { font-size: 15px; margin: 8px 0 4px; }
    .markdown code { background: var(--code); border-radius: 3px; padding: 0 3px; }
    .markdown pre { background: var(--code); padding: 6px 8px; border-radius: 6px; overflow-x: auto; margin: 0; }
    .markdown pre code { padding: 0; }
    .code-block { position: relative; margin: 6px 0; }
    .copy-code { position: absolute; top: 4px; right: 4px; }
    .reply-audio { display: block; margin-top: 6px; max-width: 100%; }
    form { border-top: 1px solid var(--line); padding: 8px; display: flex; flex-direction: column; gap: 6px; }
    textarea { font: inherit; color: inherit; background: var(--surface); border: 1px solid var(--line); border-radius: 6px; padding: 6px; resize: none; }
    .row { display: flex; flex-wrap: wrap; gap: 6px; }
    button { font: inherit; padding: 6px 12px; border: 1px solid var(--line); border-radius: 6px; background: var(--surface); color: var(--fg); cursor: pointer; }
    button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
    .status { margin: 0; font-size: 12px; color: var(--muted); min-height: 1em; }
    .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }`;

  const host = document.createElement("gima-chat");
  const shadow = host.attachShadow({ mode: "open" });
  shadow.innerHTML = `<style>${css}</style><div class="root">
    <button class="launcher" type="button" aria-expanded="false" aria-controls="gima-panel">Open chat</button>
    <section class="panel" id="gima-panel" role="dialog" aria-label="Chat" hidden>
      <header><span data-i18n="chat">Chat</span>
        <span class="picker" data-picker hidden><label for="gima-model" data-i18n="model">Model</label><select id="gima-model"></select></span>
        <button type="button" class="close" aria-label="Close chat" data-i18n-label="closeChat">×</button></header>
      <div class="log" role="log" aria-live="polite" aria-label="Conversation" data-i18n-label="conversation" tabindex="0">
        <p class="empty" data-i18n="widgetEmpty" hidden>Ask a question below to start a conversation.</p>
        <ol class="messages"></ol>
      </div>
      <form>
        <label class="visually-hidden" for="gima-message" data-i18n="message">Message</label>
        <textarea id="gima-message" rows="2" placeholder="Ask something…" data-i18n-placeholder="widgetPlaceholder"></textarea>
        <div class="row">
          <button type="submit" class="primary send" data-i18n="send">Send</button>
          <button type="button" class="stop" hidden data-i18n="stop">Stop</button>
          <button type="button" class="reconnect" hidden data-i18n="reconnect">Reconnect</button>
          <button type="button" class="record" hidden aria-pressed="false" data-i18n="record">Record</button>
        </div>
        <p class="status" role="status"></p>
      </form>
    </section></div>`;
  const q = (selector) => shadow.querySelector(selector);
  const launcher = q(".launcher");
  const panel = q(".panel");
  // The form never submits natively (that would reload the host page and lose the message): one sent before
  // the modules have loaded waits in the box and goes once the pane is ready.
  let queued = false;
  q("form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (pane) { pane.send(); return; }
    if (!q("textarea").value.trim()) return;
    queued = true;
    q(".status").textContent = t("connecting");
  });

  // A guest token expires (GIMA_ACCESS_TOKEN_TTL_S): a visitor coming back later gets a new guest session
  // instead of a widget stuck on 401.
  function expired(token) {
    try {
      const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
      return typeof claims.exp !== "number" || claims.exp * 1000 < Date.now() + 30_000;
    } catch { return true; }
  }

  async function identity() {
    if (hostToken) return hostToken;
    if (guestToken && expired(guestToken)) {
      guestToken = null;
      localStorage.removeItem(KEYS.token);
      localStorage.removeItem(KEYS.chat); // that guest's chat went with its session
    }
    if (guestToken) return guestToken;
    const resp = await fetch(`${server}/api/auth/guest`, { method: "POST", credentials: "omit" });
    if (!resp.ok) throw new Error(resp.status === 404 ? t("noGuests") : t("signInFailed", { status: resp.status }));
    guestToken = (await resp.json()).accessToken;
    localStorage.setItem(KEYS.token, guestToken);
    return guestToken;
  }

  async function ready() {
    if (pane) return pane;
    loading ??= (async () => {
      await identity();
      const [{ Transport }, { ChatPane }] = await Promise.all([
        import(`${server}/static/lib/transport.js`), import(`${server}/static/lib/chat.js`)]);
      const transport = new Transport({ base: server, token: () => hostToken || guestToken });
      pane = new ChatPane({ transport, store: sessionStorage, storeKey: KEYS.running,
        ui: { messages: q(".messages"), scroller: q(".log"), empty: q(".empty"), input: q("textarea"), send: q(".send"),
              stop: q(".stop"), status: q(".status"), reconnect: q(".reconnect"), model: q("#gima-model"), record: q(".record") },
        onChange: (chatId) => {
          if (!chatId) return;
          localStorage.setItem(KEYS.chat, chatId);
          channel?.postMessage({ chatId });
        } });
      await pane.configure().catch((error) => pane.say(error.message));
      if (!(await pane.resume())) {
        const chatId = localStorage.getItem(KEYS.chat);
        if (chatId) await pane.open(chatId).catch(() => localStorage.removeItem(KEYS.chat));
      }
      if (queued) {
        queued = false;
        pane.say("");
        pane.send();
      }
      return pane;
    })();
    try { return await loading; } catch (error) { loading = null; throw error; }
  }

  async function open() {
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    launcher.textContent = t("closeChat");
    sessionStorage.setItem(KEYS.open, "1");
    try { await ready(); q("textarea").focus(); } catch (error) { q(".status").textContent = error.message; }
  }

  function close() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.textContent = t("openChat");
    sessionStorage.removeItem(KEYS.open);
  }

  launcher.addEventListener("click", () => (panel.hidden ? open() : close()));
  q(".close").addEventListener("click", close);
  // Escape stops a running reply; with none running it closes the panel (focus back on the launcher).
  panel.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || e.defaultPrevented) return;
    e.preventDefault();
    if (pane?.streaming) pane.stop();
    else { close(); launcher.focus(); }
  });
  import(`${server}/static/lib/i18n.js`).then((i18n) => {
    const wanted = script?.dataset.gimaLang;
    if (wanted) i18n.setLanguage(wanted, { keep: false });
    t = i18n.t;
    q(".root").setAttribute("lang", i18n.language());
    i18n.translate(shadow);
    launcher.textContent = t(panel.hidden ? "openChat" : "closeChat");
  }).catch(() => { /* the server is unreachable: English until it answers */ });
  channel?.addEventListener("message", (event) => {
    // Another tab sent a message in this conversation: show it, and follow its reply.
    if (pane && !pane.streaming && event.data?.chatId) pane.open(event.data.chatId).catch(() => {});
  });

  window.GimaChat = Object.freeze({
    open, close,
    setToken(jwt) {
      hostToken = jwt || null;
      if (hostToken) sessionStorage.setItem(KEYS.token + ".host", hostToken);
      else sessionStorage.removeItem(KEYS.token + ".host");
    },
  });

  const mount = () => {
    document.body.append(host);
    if (sessionStorage.getItem(KEYS.open) || sessionStorage.getItem(KEYS.running)) open(); // picked up after navigation
  };
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount, { once: true });
})();
