"""Embeddings and voice through the official openai SDK, against a fake upstream that checks what it received."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestClient

from .. import speech
from ..conftest import Api, MakeClient, sign_up
from ..upstream_fakes import FakeUpstream, topic_vector


@pytest.fixture(scope="module")
def spoken_wav(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Real audio: Debian's espeak-ng speaking a sentence into a WAV file."""
    return speech.spoken_wav(tmp_path_factory.mktemp("audio"), "The tide comes in twice a day.").read_bytes()


async def _server(make_client: MakeClient, aiohttp_server: Any, **settings: Any) -> tuple[FakeUpstream, TestClient, Api]:
    fake = FakeUpstream("openai")
    server = await aiohttp_server(fake.app)
    url = f"http://127.0.0.1:{server.port}/v1"
    client = await make_client(embeddings_base_url=url, embeddings_api_key="emb-key", embeddings_model="text-embed",
                               audio_base_url=url, audio_api_key="audio-key", **settings)
    return fake, client, await sign_up(client, "alice@example.com")


def _sdk(client: TestClient, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=token, base_url=f"http://{client.host}:{client.port}/v1", max_retries=0)


async def test_embeddings_through_the_sdk(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, client, alice = await _server(make_client, aiohttp_server)
    sdk = _sdk(client, alice.token)
    result = await sdk.embeddings.create(model="text-embed", input=["the tide rises", "bake bread"])
    assert [d.index for d in result.data] == [0, 1]
    assert result.data[0].embedding == pytest.approx(topic_vector("the tide rises"))
    sent, headers = fake.embedding_requests[-1], fake.headers[-1]
    assert sent == {"model": "text-embed", "input": ["the tide rises", "bake bread"], "encoding_format": "base64"}
    assert headers["Authorization"] == "Bearer emb-key"  # the upstream's key, never the caller's token
    resp = await client.post("/v1/embeddings", json={"model": "text-embed", "input": "sea"}, headers=alice.headers)
    assert resp.status == 200
    assert fake.headers[-1]["traceparent"].split("-")[1] == resp.headers["X-Trace-Id"]
    await sdk.close()


@pytest.mark.parametrize(("body", "status"), [
    ({"model": "m", "input": ""}, 400),
    ({"model": "m", "input": []}, 400),
    ({"model": "m", "input": [1, "a"]}, 400),
    ({"model": "m", "input": "a", "encoding_format": "hex"}, 400),
    ({"model": "m", "input": "a", "frobnicate": 1}, 400),
    ({"input": "a"}, 400),
])
async def test_bad_embedding_requests_are_400s_that_reach_no_upstream(
    make_client: MakeClient, aiohttp_server: Any, body: dict[str, Any], status: int,
) -> None:
    fake, client, alice = await _server(make_client, aiohttp_server)
    resp = await client.post("/v1/embeddings", json=body, headers=alice.headers)
    assert resp.status == status and (await resp.json())["error"]["type"] == "invalid_request_error"
    assert fake.embedding_requests == []


async def test_an_upstream_failure_is_a_503_with_retry_after(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, client, alice = await _server(make_client, aiohttp_server)
    fake.faults.status = 500
    resp = await client.post("/v1/embeddings", json={"model": "m", "input": "a"}, headers=alice.headers)
    assert resp.status == 503 and resp.headers["Retry-After"] and (await resp.json())["error"]["code"] == \
        "upstream_unavailable"


async def test_embeddings_have_their_own_quota(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, client, alice = await _server(make_client, aiohttp_server, rate_limits="embeddings=2/min/2")
    statuses = [(await client.post("/v1/embeddings", json={"model": "m", "input": "a"}, headers=alice.headers)).status
                for _ in range(3)]
    assert statuses == [200, 200, 429] and len(fake.embedding_requests) == 2
    assert (await alice.stream("still chatting"))[0][-1].name == "done"  # the chat quota is another bucket


async def test_without_configuration_the_routes_are_404(make_client: MakeClient) -> None:
    client = await make_client()
    alice = await sign_up(client, "alice@example.com")
    for path, kwargs in (("/v1/embeddings", {"json": {"model": "m", "input": "a"}}),
                         ("/v1/audio/speech", {"json": {"model": "m", "input": "a", "voice": "v"}})):
        resp = await client.post(path, headers=alice.headers, **kwargs)
        assert resp.status == 404 and "not configured" in (await resp.json())["error"]["message"]
    anonymous = await client.post("/v1/embeddings", json={"model": "m", "input": "a"},
                                  headers={"Authorization": "Bearer not-a-key"})
    assert anonymous.status == 401


async def test_a_transcription_of_real_speech_reaches_the_upstream_byte_for_byte(
    make_client: MakeClient, aiohttp_server: Any, spoken_wav: bytes, tmp_path: Path,
) -> None:
    fake, client, alice = await _server(make_client, aiohttp_server)
    path = tmp_path / "speech.wav"
    path.write_bytes(spoken_wav)
    sdk = _sdk(client, alice.token)
    with path.open("rb") as audio:
        raw = await sdk.audio.transcriptions.with_raw_response.create(model="whisper-1", file=audio, language="en")
    result = raw.parse()
    assert result.text == f"heard {len(spoken_wav)} bytes"
    assert fake.headers[-1]["traceparent"].split("-")[1] == raw.headers["x-trace-id"]  # the trace goes upstream
    upload = fake.uploads[-1]
    assert upload["file"] == spoken_wav and upload["filename"] == "speech.wav"
    assert upload["model"] == "whisper-1" and upload["language"] == "en"
    assert fake.headers[-1]["Authorization"] == "Bearer audio-key"
    await sdk.close()


async def test_the_file_may_come_before_the_fields(make_client: MakeClient, aiohttp_server: Any,
                                                    spoken_wav: bytes) -> None:
    """The Node SDK sends the file first; the fields after it still reach the upstream."""
    fake, client, alice = await _server(make_client, aiohttp_server)
    form = aiohttp.FormData()
    form.add_field("file", spoken_wav, filename="a.wav", content_type="audio/wav")
    form.add_field("model", "whisper-1")
    resp = await client.post("/v1/audio/transcriptions", data=form, headers=alice.headers)
    assert resp.status == 200, await resp.text()
    assert fake.uploads[-1]["model"] == "whisper-1" and fake.uploads[-1]["file"] == spoken_wav


async def test_not_audio_is_400_and_too_large_is_413(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, client, alice = await _server(make_client, aiohttp_server)
    sdk = _sdk(client, alice.token)
    with pytest.raises(openai.BadRequestError, match="not audio"):
        await sdk.audio.transcriptions.create(model="whisper-1", file=("notes.wav", b"just some text, not a sound"))
    too_big = b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(25 * 1024 * 1024)
    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    form.add_field("file", io.BytesIO(too_big), filename="big.wav", content_type="audio/wav")
    resp = await client.post("/v1/audio/transcriptions", data=form, headers=alice.headers)
    assert resp.status == 413 and (await resp.json())["error"]["code"] == "payload_too_large"
    missing = aiohttp.FormData(default_to_multipart=True)
    missing.add_field("model", "whisper-1")
    resp = await client.post("/v1/audio/transcriptions", data=missing, headers=alice.headers)
    assert resp.status == 400 and "file is required" in (await resp.json())["error"]["message"]
    assert all("file" not in upload for upload in fake.uploads)  # nothing whole reached a transcription
    await sdk.close()


async def test_an_oversized_upload_without_a_length_is_stopped_at_the_limit(
    make_client: MakeClient, aiohttp_server: Any,
) -> None:
    """A chunked upload (no Content-Length) is counted as it streams, and cut at 25 MB."""
    fake, client, alice = await _server(make_client, aiohttp_server)
    boundary = "b0und4ry"

    async def body():  # type: ignore[no-untyped-def]
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
               f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
               "Content-Type: audio/wav\r\n\r\n").encode() + b"RIFF\x00\x00\x00\x00WAVEfmt "
        for _ in range(27):
            yield bytes(1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    resp = await client.post("/v1/audio/transcriptions", data=body(), headers={
        **alice.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert resp.status == 413
    assert all("file" not in upload for upload in fake.uploads)


async def test_speech_streams_the_upstream_s_audio(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, client, alice = await _server(make_client, aiohttp_server)
    sdk = _sdk(client, alice.token)
    audio = await sdk.audio.speech.create(model="tts-1", voice="alloy", input="The tide is high.")
    assert audio.content == fake.speech_audio and audio.response.headers["content-type"] == "audio/mpeg"
    assert fake.headers[-1]["traceparent"].split("-")[1] == audio.response.headers["x-trace-id"]
    assert fake.uploads[-1] == {"model": "tts-1", "voice": "alloy", "input": "The tide is high."}
    for bad in ({"model": "tts-1", "voice": "alloy", "input": ""}, {"model": "tts-1", "voice": "alloy", "input": "x",
                                                                     "speed": 9}):
        resp = await client.post("/v1/audio/speech", json=bad, headers=alice.headers)
        assert resp.status == 400
    await sdk.close()
