// Markdown of a reply, rendered safely while it streams: marked parses, DOMPurify sanitizes, and only the block
// still growing is rendered again — the blocks before it are final and stay in the DOM as they were.
// Loaded only when a reply has something to render (reply.js imports it on demand).
import { Marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.mjs";
import { t } from "./i18n.js";

const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const marked = new Marked({ gfm: true, async: false });
marked.use({
  renderer: {
    // A model's raw HTML is shown as the text it is, never as markup.
    html({ text, block }) { return block ? `<p>${escapeHtml(text)}</p>` : escapeHtml(text); },
    // Images would load third-party URLs into the page (tracking, and the CSP refuses them): a link instead.
    image({ href, text }) { return `<a href="${escapeHtml(href || "")}">${escapeHtml(text || href || "")}</a>`; },
  },
});

const purifier = DOMPurify(window);
purifier.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    if (node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  }
});
const PURIFY = {
  USE_PROFILES: { html: true }, ADD_ATTR: ["target"], FORBID_TAGS: ["style", "form", "img", "video", "audio", "iframe"],
  FORBID_ATTR: ["style", "id", "name"], RETURN_DOM_FRAGMENT: true,
};

function fragmentOf(tokens, links, doc) {
  const list = Object.assign(tokens, { links });
  const fragment = purifier.sanitize(marked.parser(list), PURIFY);
  const adopted = doc.importNode(fragment, true);
  // A link whose URL the sanitizer refused (javascript:, data:…) keeps its text and stops being a link.
  for (const dead of adopted.querySelectorAll("a:not([href])")) dead.replaceWith(...dead.childNodes);
  for (const pre of adopted.querySelectorAll("pre")) addCopyButton(pre);
  return adopted;
}

function addCopyButton(pre) {
  const wrap = document.createElement("div");
  wrap.className = "code-block";
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy-code";
  copy.textContent = t("copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(pre.textContent);
      copy.textContent = t("copied");
    } catch {
      copy.textContent = t("copyFailed");
    }
    setTimeout(() => { copy.textContent = t("copy"); }, 1500);
  });
  pre.replaceWith(wrap);
  wrap.append(copy, pre);
}

export class MarkdownView {
  constructor(container) {
    this.el = container;
    this.el.classList.add("markdown");
    this.text = "";
    this.settled = 0; // characters of `text` rendered as final blocks
    this.tail = null; // the element holding the last, still growing block
    this.frame = 0;
  }

  set(text) {
    this.text = text.replace(/\r\n?/g, "\n");
    this.settled = 0;
    this.tail = null;
    this.el.replaceChildren();
    this.render();
  }

  append(text) {
    this.text += text.replace(/\r\n?/g, "\n");
    // One render per frame however many tokens arrived in it.
    this.frame ||= requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  flush() {
    if (this.frame) { cancelAnimationFrame(this.frame); this.frame = 0; }
    this.render();
  }

  render() {
    const tokens = marked.lexer(this.text.slice(this.settled));
    // The last block that is not blank space can still change (a list grows, a fence closes); the ones before it
    // cannot, so they are rendered once and kept.
    let last = tokens.length - 1;
    while (last > 0 && tokens[last].type === "space") last -= 1;
    const doc = this.el.ownerDocument;
    if (last > 0) {
      const final = tokens.slice(0, last);
      if (!this.tail) this.tail = this.el.appendChild(doc.createElement("div"));
      this.tail.before(fragmentOf(final, tokens.links, doc));
      this.settled += final.reduce((n, token) => n + token.raw.length, 0);
    }
    if (!this.tail) this.tail = this.el.appendChild(doc.createElement("div"));
    this.tail.className = "md-tail";
    this.tail.replaceChildren(fragmentOf(tokens.slice(Math.max(last, 0)), tokens.links, doc));
  }
}
