// Every string the page and the widget show, one table per language. The browser's language picks one; the
// "Language" switch overrides it and is kept (localStorage). Markup names its strings with data-i18n attributes.

const STRINGS = {
  en: {
    languageName: "English",
    authHint: "Sign up or log in to chat.",
    email: "Email", password: "Password", login: "Log in", signup: "Sign up", logout: "Log out",
    chats: "Chats", newChat: "New chat", searchChats: "Search chats", searchResults: "Search results",
    noResults: "No messages found.", chatActions: "Actions for “{title}”",
    rename: "Rename", renamePrompt: "New name for “{title}”", delete: "Delete", deleteConfirm: "Delete “{title}” and all its messages?",
    importTitle: "Import old chats", exportFile: "Export file", import: "Import", importProgress: "Import progress",
    conversation: "Conversation", message: "Message",
    messagePlaceholder: "Ask something… (Enter sends, Shift+Enter adds a line)", widgetPlaceholder: "Ask something…",
    send: "Send", stop: "Stop", reconnect: "Reconnect", model: "Model", language: "Language",
    record: "Record", stopRecording: "Stop recording", readAloud: "Read aloud",
    recording: "Recording… press “Stop recording” when you are done.", transcribing: "Transcribing…",
    micDenied: "The microphone was refused: allow it in the browser's site settings to record.",
    noMic: "No microphone was found.", speaking: "Preparing audio…",
    copy: "Copy", copied: "Copied", copyFailed: "Copy failed", copyReply: "Copy reply", edit: "Edit", regenerate: "Regenerate",
    emptyTitle: "Start a conversation", widgetEmpty: "Ask a question below to start a conversation.",
    emptyHint: "Type a question in the Message box and press Enter (or Send). Your chats are listed under Chats.",
    busy: "Busy: try again in {s} s…", tryAgain: "try again in {s} s", thinking: "thinking…", working: "{agent} is working…",
    retrying: "connection lost: reconnecting…", lost: "The connection was lost.", reconnecting: "reconnecting…",
    answeredBy: "Answered by {model}", answeredByFallback: "Answered by {model} instead of {from} ({reason})",
    status_streaming: "streaming", status_complete: "complete", status_cancelled: "cancelled", status_failed: "failed",
    status_error: "error", status_interrupted: "interrupted", status_superseded: "superseded",
    openChat: "Open chat", closeChat: "Close chat", chat: "Chat", connecting: "Connecting…",
    noGuests: "chat is not open to guests here", signInFailed: "sign-in failed ({status})",
    importChoose: "Choose an export file first.", importNotJson: "That file is not a JSON export.",
    importEmpty: "No conversations found in that file.", importSent: "Sent {n} of {total}…",
    importProgressText: "Imported {n} of {total}…", importPaused: "Imported {n} of {total} (paused: the server is busy)…",
    importDone: "Imported {n} conversations ({skipped} already there).", importFailed: "Import failed: {error}.",
    importSignedOut: "Import stopped: you were signed out; sign in and import again.",
    importSlowDown: "Import stopped: the server asked to slow down; try again in {s} s.",
  },
  es: {
    languageName: "Español",
    authHint: "Regístrate o inicia sesión para chatear.",
    email: "Correo electrónico", password: "Contraseña", login: "Iniciar sesión", signup: "Registrarse",
    logout: "Cerrar sesión",
    chats: "Chats", newChat: "Nuevo chat", searchChats: "Buscar en los chats", searchResults: "Resultados de la búsqueda",
    noResults: "No se encontraron mensajes.", chatActions: "Acciones de «{title}»",
    rename: "Renombrar", renamePrompt: "Nuevo nombre para «{title}»", delete: "Eliminar",
    deleteConfirm: "¿Eliminar «{title}» y todos sus mensajes?",
    importTitle: "Importar chats antiguos", exportFile: "Archivo exportado", import: "Importar",
    importProgress: "Progreso de la importación",
    conversation: "Conversación", message: "Mensaje",
    messagePlaceholder: "Pregunta algo… (Intro envía, Mayús+Intro añade una línea)", widgetPlaceholder: "Pregunta algo…",
    send: "Enviar", stop: "Detener", reconnect: "Reconectar", model: "Modelo", language: "Idioma",
    record: "Grabar", stopRecording: "Detener la grabación", readAloud: "Leer en voz alta",
    recording: "Grabando… pulsa «Detener la grabación» cuando termines.", transcribing: "Transcribiendo…",
    micDenied: "Se denegó el micrófono: permítelo en la configuración del sitio del navegador para grabar.",
    noMic: "No se encontró ningún micrófono.", speaking: "Preparando el audio…",
    copy: "Copiar", copied: "Copiado", copyFailed: "No se pudo copiar", copyReply: "Copiar respuesta", edit: "Editar",
    regenerate: "Regenerar",
    emptyTitle: "Empieza una conversación", widgetEmpty: "Escribe una pregunta abajo para empezar una conversación.",
    emptyHint: "Escribe una pregunta en el cuadro Mensaje y pulsa Intro (o Enviar). Tus chats aparecen en Chats.",
    busy: "Ocupado: inténtalo de nuevo en {s} s…", tryAgain: "inténtalo de nuevo en {s} s", thinking: "pensando…",
    working: "{agent} está trabajando…", retrying: "se perdió la conexión: reconectando…",
    lost: "Se perdió la conexión.", reconnecting: "reconectando…",
    answeredBy: "Respondió {model}", answeredByFallback: "Respondió {model} en lugar de {from} ({reason})",
    status_streaming: "en curso", status_complete: "completa", status_cancelled: "cancelada", status_failed: "fallida",
    status_error: "error", status_interrupted: "interrumpida", status_superseded: "reemplazada",
    openChat: "Abrir chat", closeChat: "Cerrar chat", chat: "Chat", connecting: "Conectando…",
    noGuests: "el chat no está abierto a invitados aquí", signInFailed: "no se pudo iniciar sesión ({status})",
    importChoose: "Elige primero un archivo exportado.", importNotJson: "Ese archivo no es una exportación JSON.",
    importEmpty: "No se encontraron conversaciones en ese archivo.", importSent: "Enviadas {n} de {total}…",
    importProgressText: "Importadas {n} de {total}…",
    importPaused: "Importadas {n} de {total} (en pausa: el servidor está ocupado)…",
    importDone: "Importadas {n} conversaciones ({skipped} ya estaban).", importFailed: "La importación falló: {error}.",
    importSignedOut: "Importación detenida: se cerró tu sesión; inicia sesión e importa de nuevo.",
    importSlowDown: "Importación detenida: el servidor pidió ir más despacio; inténtalo de nuevo en {s} s.",
  },
};

export const LANGUAGES = Object.keys(STRINGS);
const KEY = "gima.lang";
const listeners = new Set();

function stored() {
  try { return localStorage.getItem(KEY); } catch { return null; }
}

function fromBrowser() {
  for (const tag of navigator.languages?.length ? navigator.languages : [navigator.language || "en"]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (STRINGS[base]) return base;
  }
  return "en";
}

let current = STRINGS[stored()] ? stored() : fromBrowser();

export const language = () => current;

export function t(key, vars = {}) {
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

// keep: false for an embedding site's choice (the widget's data-gima-lang), which is not the visitor's.
export function setLanguage(lang, { keep = true } = {}) {
  if (!STRINGS[lang] || lang === current) return;
  current = lang;
  if (keep) try { localStorage.setItem(KEY, lang); } catch { /* storage refused: the choice lasts this page */ }
  for (const listener of listeners) listener(lang);
}

export const onLanguage = (listener) => listeners.add(listener);

// data-i18n="<name>" sets the text, data-i18n-label the accessible name, data-i18n-placeholder the placeholder.
export function translate(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}

// A "Language" switch: a select offering every language, showing the current one.
export function languageSwitch(select) {
  select.replaceChildren(...LANGUAGES.map((lang) => Object.assign(document.createElement("option"),
    { value: lang, textContent: STRINGS[lang].languageName, lang })));
  select.value = current;
  select.addEventListener("change", () => setLanguage(select.value));
  onLanguage((lang) => { select.value = lang; });
}
