// Voice, when the server has it configured: "Record" (MediaRecorder → /v1/audio/transcriptions → the text put in
// the Message box, for the person to read and send) and "Read aloud" (/v1/audio/speech → an audio element).
import { t } from "./i18n.js";

const MAX_SPEECH_CHARS = 4096; // the server's limit for one speech request
const MAX_RECORDING_MS = 120_000;

export class VoiceInput {
  // ui: {record (button), input (textarea)}; say(text) shows a status line.
  constructor({ transport, ui, say }) {
    this.transport = transport;
    this.ui = ui;
    this.say = say;
    this.recorder = null;
    this.timer = 0;
    ui.record.addEventListener("click", () => (this.recorder ? this.stop() : this.start()));
  }

  label() {
    this.ui.record.textContent = t(this.recorder ? "stopRecording" : "record");
    this.ui.record.setAttribute("aria-pressed", this.recorder ? "true" : "false");
  }

  async start() {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      this.say(error?.name === "NotFoundError" ? t("noMic") : t("micDenied"));
      return;
    }
    const type = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm"]
      .find((candidate) => MediaRecorder.isTypeSupported?.(candidate));
    const recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
    const chunks = [];
    recorder.addEventListener("dataavailable", (event) => { if (event.data.size) chunks.push(event.data); });
    recorder.addEventListener("stop", () => {
      for (const track of stream.getTracks()) track.stop();
      this.transcribe(new Blob(chunks, { type: recorder.mimeType || "audio/webm" }));
    }, { once: true });
    this.recorder = recorder;
    recorder.start();
    this.timer = setTimeout(() => this.stop(), MAX_RECORDING_MS);
    this.label();
    this.say(t("recording"));
  }

  stop() {
    clearTimeout(this.timer);
    const recorder = this.recorder;
    this.recorder = null;
    this.label();
    if (recorder?.state === "recording") recorder.stop();
  }

  async transcribe(blob) {
    if (!blob.size) { this.say(""); return; }
    this.say(t("transcribing"));
    const form = new FormData();
    form.append("model", ""); // the server's configured transcription model
    form.append("file", blob, blob.type.includes("ogg") ? "speech.ogg" : "speech.webm");
    try {
      const { text } = await this.transport.json("/v1/audio/transcriptions", { method: "POST", form });
      const box = this.ui.input;
      box.value = box.value.trim() ? `${box.value.trimEnd()} ${text}` : text;
      box.focus();
      this.say("");
    } catch (error) {
      this.say(error.message);
    }
  }
}

// Read a reply aloud: the audio element goes right after the button, with its own controls.
export async function readAloud(transport, text, button, say) {
  const item = button.closest("li") ?? button.parentNode;
  item.querySelector("audio.reply-audio")?.remove();
  button.disabled = true;
  say(t("speaking"));
  try {
    const resp = await transport.request("/v1/audio/speech", { method: "POST",
      body: { model: "", input: text.slice(0, MAX_SPEECH_CHARS), voice: "alloy" } });
    const audio = document.createElement("audio");
    audio.className = "reply-audio";
    audio.controls = true;
    audio.src = URL.createObjectURL(await resp.blob());
    audio.setAttribute("aria-label", t("readAloud"));
    button.parentNode.after(audio);
    say("");
    await audio.play().catch(() => { /* autoplay refused: the controls are there */ });
  } catch (error) {
    say(error.message);
  } finally {
    button.disabled = false;
  }
}
