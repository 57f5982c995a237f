// Server-Sent Events read from a fetch() body: EventSource can neither POST nor send an Authorization header.
// Hand-written because the format is ten lines of the HTML standard and no dependency is needed for it.

export async function* sseEvents(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const abort = () => reader.cancel().catch(() => {});
  signal?.addEventListener("abort", abort, { once: true });
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = { name: "message", id: undefined, data: [] };
        for (const line of frame.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event.name = text;
          else if (field === "data") event.data.push(text);
          else if (field === "id") event.id = Number(text);
        }
        if (event.data.length) yield { name: event.name, id: event.id, data: JSON.parse(event.data.join("\n")) };
      }
    }
  } finally {
    signal?.removeEventListener("abort", abort);
    reader.releaseLock?.();
  }
}
