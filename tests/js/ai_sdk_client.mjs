// The AI SDK's own client code against a live gima-server: node ai_sdk_client.mjs BASE TOKEN SCENARIO CHAT_ID
// Prints one JSON line with what the client saw; any schema rejection or transport error exits non-zero.
// RESUME_BASE (optional) sends resumes and stops to another server process than BASE.
import { DefaultChatTransport, readUIMessageStream } from "ai";

const [base, token, scenario, chatId] = process.argv.slice(2);
const headers = { Authorization: `Bearer ${token}` };
const resumeBase = process.env.RESUME_BASE ?? base;
const transport = new DefaultChatTransport({ api: `${base}/api/chat`, headers });
const resumer = new DefaultChatTransport({ api: `${resumeBase}/api/chat`, headers });
const userMessage = (text) => ({ id: `u-${Date.now()}`, role: "user", parts: [{ type: "text", text }] });

function textOf(message) {
  return message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
}

// Every chunk goes through the SDK's schema (inside the transport) and then through readUIMessageStream.
async function read(stream, { stopAfterDeltas = Infinity, onDeltas } = {}) {
  const types = [];
  let deltas = 0;
  let last = null;
  const counted = stream.pipeThrough(new TransformStream({
    async transform(chunk, controller) {
      types.push(chunk.type);
      controller.enqueue(chunk);
      if (chunk.type === "text-delta" && ++deltas === stopAfterDeltas && onDeltas) await onDeltas();
    },
  }));
  for await (const message of readUIMessageStream({ stream: counted })) last = message;
  return { types, message: last };
}

async function send(text, abortSignal) {
  return transport.sendMessages({
    chatId, messages: [userMessage(text)], trigger: "submit-message", messageId: undefined, abortSignal,
  });
}

async function main() {
  if (scenario === "send") {
    const { types, message } = await read(await send("Explain the tides"));
    return { types, text: textOf(message), id: message.id, parts: message.parts.map((p) => p.type) };
  }
  if (scenario === "cut-and-resume") {
    const abort = new AbortController();
    let before = "";
    try {
      const stream = await send("Tell me a long story", abort.signal);
      const reader = stream.getReader();
      let deltas = 0;
      while (deltas < 3) {
        const { value, done } = await reader.read();
        if (done) throw new Error("the reply ended before the cut");
        if (value.type === "text-delta") { deltas += 1; before += value.delta; }
      }
      abort.abort(); // the network goes away mid-reply
      await reader.read().catch(() => null);
    } catch (error) {
      if (error.name !== "AbortError") throw error;
    }
    const resumed = await resumer.reconnectToStream({ chatId });
    if (resumed === null) throw new Error("nothing to resume (204) while the reply was running");
    const { types, message } = await read(resumed);
    return { before, types, text: textOf(message), id: message.id };
  }
  if (scenario === "nothing-runs") {
    return { resumed: await resumer.reconnectToStream({ chatId }) };
  }
  if (scenario === "stop") {
    const stop = async () => {
      const resp = await fetch(`${resumeBase}/api/chat/${encodeURIComponent(chatId)}/stop`, { method: "POST", headers });
      if (resp.status !== 202) throw new Error(`stop answered ${resp.status}`);
    };
    const { types, message } = await read(await send("Another long story"), { stopAfterDeltas: 2, onDeltas: stop });
    return { types, text: textOf(message), metadata: message.metadata ?? null };
  }
  throw new Error(`unknown scenario ${scenario}`);
}

main().then(
  (result) => { console.log(JSON.stringify(result)); },
  (error) => { console.error(error?.stack ?? String(error)); process.exit(1); },
);
