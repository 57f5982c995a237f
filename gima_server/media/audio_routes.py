"""POST /v1/audio/transcriptions (multipart) and POST /v1/audio/speech in OpenAI's shapes (route class voice).

A transcription's upload is passed on part by part while it arrives: the upstream call starts with the first
part, the file goes through in chunks (never whole in memory), and a file that turns out not to be audio or to
be over the limit stops the upstream call and answers 400 or 413.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from aiohttp import BodyPartReader, web

from .. import appkeys
from ..agents.plain import PlainUpstream, refused
from ..agents.upstream import UpstreamError
from ..auth.sessions import require_user
from ..errors import ApiError, invalid
from ..observability.tracing import request_trace_id
from ..validation import Field, check_object, parse_json, read_raw
from .audio import SNIFF_BYTES, SPEECH_FORMATS, MultipartFraming, audio_kind
from .embeddings_routes import not_configured, upstream_failed

MAX_AUDIO_BYTES = 25 * 1024 * 1024  # OpenAI's limit for one file
_MULTIPART_OVERHEAD = 64 * 1024  # the fields and part headers around the file
_CHUNK = 64 * 1024
_FIELD_CHARS = {"model": 200, "language": 16, "response_format": 16, "prompt": 4000, "temperature": 16,
                "timestamp_granularities[]": 16, "include[]": 64, "chunking_strategy": 512, "stream": 8}
_RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
_SPEECH = {
    "model": Field(str, required=True, max_chars=200),
    "input": Field(str, required=True, max_chars=4096),
    "voice": Field(str, required=True, max_chars=64),
    "response_format": Field(str, max_chars=8),
    "speed": Field((int, float)),
    "instructions": Field(str, max_chars=4096),
    "stream_format": Field(str, max_chars=8),
}
_AUDIO_SETTING = "GIMA_AUDIO_BASE_URL, or audio = \"<id>\" in GIMA_AGENTS_FILE"


def _audio_upstream(request: web.Request) -> PlainUpstream:
    upstream = request.app[appkeys.AUDIO]
    if upstream is None:
        raise not_configured("voice", _AUDIO_SETTING)
    return upstream


class _Upload:
    """The incoming form, re-framed for the upstream as it is read; the first problem found is kept in `refusal`."""

    def __init__(self, request: web.Request, upstream: PlainUpstream) -> None:
        self._request = request
        self._upstream = upstream
        self.framing = MultipartFraming()
        self.refusal: ApiError | None = None
        self.fields: dict[str, str] = {}
        self.file_bytes = 0

    def _refuse(self, error: ApiError) -> ApiError:
        self.refusal = error
        return error

    async def body(self) -> AsyncIterator[bytes]:
        reader = await self._request.multipart()
        seen_file = False
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader) or not part.name:
                raise self._refuse(invalid("every part of the form needs a name"))
            if part.name == "file":
                if seen_file:
                    raise self._refuse(invalid("send one file"))
                seen_file = True
                async for chunk in self._file(part):
                    yield chunk
            else:
                yield await self._field(part)
        if not seen_file:
            raise self._refuse(invalid("file is required (parameter 'file')"))
        if "model" not in self.fields:
            raise self._refuse(invalid("model is required (parameter 'model')"))
        yield self.framing.end()

    async def _field(self, part: BodyPartReader) -> bytes:
        name = str(part.name)
        limit = _FIELD_CHARS.get(name)
        if limit is None:
            raise self._refuse(invalid(f"unknown field {name!r}"))
        raw = bytearray()
        while chunk := await part.read_chunk(8192):
            raw += chunk
            if len(raw) > limit * 4:  # UTF-8: at most four bytes a character
                raise self._refuse(invalid(f"{name} is too long (at most {limit} characters)"))
        try:
            value = raw.decode()
        except UnicodeDecodeError:
            raise self._refuse(invalid(f"{name} must be UTF-8 text")) from None
        if len(value) > limit or "\x00" in value:
            raise self._refuse(invalid(f"{name} must be at most {limit} characters of text"))
        if name == "response_format" and value not in _RESPONSE_FORMATS:
            raise self._refuse(invalid(f"response_format must be one of {', '.join(_RESPONSE_FORMATS)}"))
        if name == "model":
            value = self._upstream.target.upstream_model(value)
        self.fields[name] = value
        return self.framing.field(name, value)

    async def _file(self, part: BodyPartReader) -> AsyncIterator[bytes]:
        head = b""
        while len(head) < SNIFF_BYTES:
            chunk = await part.read_chunk(_CHUNK)
            if not chunk:
                break
            head += chunk
        kind = audio_kind(head[:SNIFF_BYTES])
        if kind is None:
            raise self._refuse(invalid("file is not audio this server accepts (wav, mp3, m4a/mp4, ogg/opus, "
                                       "flac or webm)"))
        filename = part.filename or f"audio.{kind}"
        yield self.framing.part_head("file", filename, part.headers.get("Content-Type") or "application/octet-stream")
        chunk = head
        while chunk:
            self.file_bytes += len(chunk)
            if self.file_bytes > MAX_AUDIO_BYTES:
                raise self._refuse(ApiError(413, "payload_too_large",
                                            f"the audio file is larger than {MAX_AUDIO_BYTES // (1024 * 1024)} MB"))
            yield chunk
            chunk = await part.read_chunk(_CHUNK)
        yield b"\r\n"


async def transcriptions(request: web.Request) -> web.Response:
    await require_user(request)
    upstream = _audio_upstream(request)
    if request.content_length is not None and request.content_length > MAX_AUDIO_BYTES + _MULTIPART_OVERHEAD:
        raise ApiError(413, "payload_too_large", f"the audio file is larger than {MAX_AUDIO_BYTES // (1024 * 1024)} MB")
    if request.content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "body must be multipart/form-data with a file part")
    upload = _Upload(request, upstream)
    try:
        async with upstream.post("/v1/audio/transcriptions", request_trace_id(request), data=upload.body(),
                                 headers={"Content-Type": upload.framing.content_type}) as response:
            if upload.refusal is not None:
                raise upload.refusal
            if response.status == 413:
                raise ApiError(413, "payload_too_large", "the audio upstream refused the file as too large")
            if response.status != 200:
                raise await refused(response, "audio")
            body = await response.read()
            content_type = response.headers.get("Content-Type", "application/json")
    except UpstreamError as exc:
        raise upload.refusal or upstream_failed(exc) from None
    except ApiError:
        raise
    except Exception:
        if upload.refusal is not None:  # the upload was stopped half-way: the client's error, not the upstream's
            raise upload.refusal from None
        raise
    return web.Response(body=body, headers={"Content-Type": content_type})


async def speech(request: web.Request) -> web.StreamResponse:
    await require_user(request)
    upstream = _audio_upstream(request)
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "body must be application/json")
    body = check_object(parse_json(await read_raw(request)), _SPEECH)
    fmt = body["response_format"] or "mp3"
    if fmt not in SPEECH_FORMATS:
        raise invalid(f"response_format must be one of {', '.join(SPEECH_FORMATS)} (parameter 'response_format')")
    if body["speed"] is not None and not 0.25 <= body["speed"] <= 4.0:
        raise invalid("speed must be between 0.25 and 4.0 (parameter 'speed')")
    if body["stream_format"] not in (None, "audio"):
        raise invalid("stream_format must be audio (parameter 'stream_format')")
    if not body["input"].strip():
        raise invalid("input must not be empty (parameter 'input')")
    sent: dict[str, Any] = {k: v for k, v in body.items() if v is not None}
    sent["model"] = upstream.target.upstream_model(body["model"])
    answer: web.StreamResponse | None = None
    try:
        async with upstream.post("/v1/audio/speech", request_trace_id(request), json=sent) as response:
            if response.status != 200:
                raise await refused(response, "audio")
            answer = web.StreamResponse(headers={
                "Content-Type": response.headers.get("Content-Type") or SPEECH_FORMATS[fmt]})
            await answer.prepare(request)
            async for chunk in response.content.iter_chunked(_CHUNK):  # passed on as it comes
                await answer.write(chunk)
    except UpstreamError as exc:
        if answer is None:
            raise upstream_failed(exc) from None
        assert request.transport is not None
        request.transport.close()  # audio already under way: a cut connection is the only honest end
        return answer
    assert answer is not None
    await answer.write_eof()
    return answer


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/speech", speech)
