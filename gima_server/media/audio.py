"""Pure helpers for the audio routes: recognising audio by its first bytes, and multipart framing for the upstream.

Both hand-written: six container signatures do not need a dependency, and no library writes a multipart body
whose parts arrive one by one from another multipart body (aiohttp's MultipartWriter wants every part first).
"""

from __future__ import annotations

import secrets

SNIFF_BYTES = 12
SPEECH_FORMATS = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
                  "wav": "audio/wav", "pcm": "audio/L16"}


def audio_kind(head: bytes) -> str | None:
    """The container of an audio file from its first SNIFF_BYTES bytes (None: not audio this server knows)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mpeg"  # MP3 (with or without its ID3 tag) and ADTS AAC frames
    return None


class MultipartFraming:
    """The bytes of a multipart/form-data body, part by part."""

    def __init__(self) -> None:
        self.boundary = "gima-" + secrets.token_hex(16)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def field(self, name: str, value: str) -> bytes:
        return self.part_head(name) + value.encode() + b"\r\n"

    def part_head(self, name: str, filename: str | None = None, content_type: str | None = None) -> bytes:
        disposition = f'form-data; name="{_quoted(name)}"'
        if filename is not None:
            disposition += f'; filename="{_quoted(filename)}"'
        head = f"--{self.boundary}\r\nContent-Disposition: {disposition}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        return (head + "\r\n").encode()

    def end(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()


def _quoted(text: str) -> str:
    """A name inside a quoted header value: no quote, backslash or line break can end it early."""
    return "".join("_" if c in '"\\\r\n' else c for c in text)[:200]
