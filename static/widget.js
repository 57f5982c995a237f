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

  const css = `
    .root { all: initial; font: 14px/1.45 system-ui, sans-serif; color: #1d232a; }
    .launcher { all: initial; position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; cursor: pointer;
      background: #2f6fde; color: #fff; font: 600 14px system-ui, sans-serif; padding: 12px 18px; border-radius: 24px;
      box-shadow: 0 4px 14px rgba(0,0,0,.2); }
    .panel { position: fixed; right: 20px; bottom: 76px; z-index: 2147483000; width: min(380px, calc(100vw - 40px));
      height: min(560px, calc(100vh - 110px)); display: flex; flex-direction: column; background: #fff; color: #1d232a;
      border: 1px solid #d9dee3; border-radius: 12px; box-shadow: 0 8px 30px rgba(0,0,0,.18); overflow: hidden; }
    .panel[hidden], [hidden] { display: none !important; }
    header { display: flex; justify-content: space-between; align-items: center; padding: 10px 12px; border-bottom: 1px solid #d9dee3; font-weight: 600; }
    ol { list-style: none; margin: 0; padding: 10px; flex: 1; overflow: auto; }
    li { margin: 0 0 10px; padding: 8px 10px; border-radius: 8px; border: 1px solid #d9dee3; white-space: pre-wrap; color: #1d232a; background: #fff; }
    li.user { background: #eef3fb; }
    .agent-name { margin: 4px 0 0; font-size: 11px; font-weight: 600; text-transform: uppercase; color: #6b7580; }
    .message-status { margin: 4px 0 0; font-size: 12px; color: #6b7580; }
    form { border-top: 1px solid #d9dee3; padding: 8px; display: flex; flex-direction: column; gap: 6px; }
    textarea { font: inherit; color: inherit; background: #fff; border: 1px solid #d9dee3; border-radius: 6px; padding: 6px; resize: none; }
    .row { display: flex; gap: 6px; }
    button { font: inherit; padding: 6px 12px; border: 1px solid #d9dee3; border-radius: 6px; background: #fff; color: #1d232a; cursor: pointer; }
    button.primary { background: #2f6fde; border-color: #2f6fde; color: #fff; }
    .status { margin: 0; font-size: 12px; color: #6b7580; min-height: 1em; }
    .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }`;

  const host = document.createElement("gima-chat");
  const shadow = host.attachShadow({ mode: "open" });
  shadow.innerHTML = `<style>${css}</style><div class="root">
    <button class="launcher" type="button" aria-expanded="false" aria-controls="gima-panel">Open chat</button>
    <section class="panel" id="gima-panel" role="dialog" aria-label="Chat" hidden>
      <header><span>Chat</span><button type="button" class="close" aria-label="Close chat">×</button></header>
      <ol class="messages" role="log" aria-live="polite" aria-label="Conversation"></ol>
      <form>
        <label class="visually-hidden" for="gima-message">Message</label>
        <textarea id="gima-message" rows="2" placeholder="Ask something…"></textarea>
        <div class="row">
          <button type="submit" class="primary send">Send</button>
          <button type="button" class="stop" hidden>Stop</button>
          <button type="button" class="reconnect" hidden>Reconnect</button>
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
    q(".status").textContent = "Connecting…";
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
    if (!resp.ok) throw new Error(resp.status === 404 ? "chat is not open to guests here" : `sign-in failed (${resp.status})`);
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
        ui: { messages: q(".messages"), input: q("textarea"), send: q(".send"), stop: q(".stop"), status: q(".status"),
              reconnect: q(".reconnect") },
        onChange: (chatId) => {
          if (!chatId) return;
          localStorage.setItem(KEYS.chat, chatId);
          channel?.postMessage({ chatId });
        } });
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
    launcher.textContent = "Close chat";
    sessionStorage.setItem(KEYS.open, "1");
    try { await ready(); q("textarea").focus(); } catch (error) { q(".status").textContent = error.message; }
  }

  function close() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.textContent = "Open chat";
    sessionStorage.removeItem(KEYS.open);
  }

  launcher.addEventListener("click", () => (panel.hidden ? open() : close()));
  q(".close").addEventListener("click", close);
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
