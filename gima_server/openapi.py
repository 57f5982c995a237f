"""GET /api/openapi.json: an OpenAPI 3.1 description of every route, built from the routes' own body specs.

A test compares it with the router (every route described, nothing described that is not served) and
schemathesis fuzzes a live server with it; hand-written because no aiohttp schema library covers SSE routes,
the OpenAI dialect and these body rules without decorating every handler.
"""

from __future__ import annotations

from typing import Any, Mapping

from aiohttp import web

from . import __version__
from .apikeys.routes import KEY_BODY
from .auth.routes import DELETE_ACCOUNT_BODY, LOGIN_BODY, SIGNUP_BODY
from .chats import CHAT_BODY, RENAME_BODY
from .dialects.ui_routes import MAX_CHAT_ID_CHARS
from .migration.routes import JOB_BODY
from .streams.routes import STREAM_BODY
from .validation import Field

_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array",
                                dict: "object"}


def object_schema(spec: Mapping[str, Field]) -> dict[str, Any]:
    """The JSON Schema of a body that validation.check_object accepts."""
    properties: dict[str, Any] = {}
    for name, field in spec.items():
        kinds = field.kind if isinstance(field.kind, tuple) else (field.kind,)
        types = sorted({_JSON_TYPES[k] for k in kinds})
        prop: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
        if field.max_chars is not None:
            prop["maxLength"] = field.max_chars
        if "string" in types:
            prop["pattern"] = "^[^\\u0000]*$"
        properties[name] = prop
    required = [name for name, field in spec.items() if field.required]
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_NATIVE_EVENT = {"type": "object", "required": ["data"], "properties": {
    "event": {"enum": ["meta", "agent", "delta", "tool", "done", "error", "snapshot"]},
    "data": {"type": "string"}, "id": {"type": "string", "pattern": "^[0-9]+$"}}}
_DIALECT_EVENT = {"type": "object", "required": ["data"], "properties": {  # no event lines: the default name only
    "event": {"const": "message"}, "data": {"type": "string"}, "id": {"type": "string", "pattern": "^[0-9]+$"}}}
_SSE = {"description": "a text/event-stream of the reply's events (the schema is each event's)",
        "content": {"text/event-stream": {"schema": _NATIVE_EVENT}}}
_UI_SSE = {"description": "UI message stream parts, one JSON object per data line, then [DONE]",
           "content": {"text/event-stream": {"schema": _DIALECT_EVENT}}}
_NO_CONTENT = {"description": "nothing (more) to send"}
_ERROR = _json(_ref("Error"), "an error, as JSON")
_OPENAI_ERROR = _json(_ref("OpenAIError"), "an error in OpenAI's shape")


def _op(summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None, public: bool = False,
        params: list[dict[str, Any]] | None = None, error: dict[str, Any] = _ERROR,
        body_content: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, "default": error}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if body_content is not None:
        op["requestBody"] = {"required": True, "content": body_content}
    if params:
        op["parameters"] = params
    if public:
        op["security"] = []
    return op


def _path(name: str, schema: dict[str, Any] = _ID) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


_TEXT = {"type": "string", "pattern": "^[^\\u0000]*$"}
_UI_MESSAGE = {"type": "object", "required": ["id", "role", "parts"], "properties": {
    "id": {"type": "string"}, "role": {"enum": ["system", "user", "assistant"]},
    "parts": {"type": "array", "items": {"type": "object", "required": ["type", "text"],
                                         "properties": {"type": {"const": "text"}, "text": _TEXT}}}}}
_OPENAI_MESSAGE = {"type": "object", "required": ["role", "content"], "additionalProperties": False, "properties": {
    "role": {"enum": ["system", "developer", "user", "assistant"]}, "content": _TEXT, "name": {"type": "string"}}}


def _components() -> dict[str, Any]:
    error_body = {"type": "object", "required": ["code", "message", "traceId"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "traceId": {"type": "string"},
        "retryAfter": {"type": "number"}}}
    openai_error = {"type": "object", "required": ["message", "type", "param", "code"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]},
        "code": {"type": ["string", "null"]}}}
    user = {"type": "object", "required": ["id", "email", "name", "roles"], "properties": {
        "id": {"type": "string"}, "email": {"type": "string"}, "name": {"type": "string"},
        "roles": {"type": "array", "items": {"type": "string"}}}}
    chat = {"type": "object", "required": ["id", "title", "createdAt", "updatedAt"], "properties": {
        "id": {"type": "string"}, "title": {"type": "string"}, "createdAt": {"type": "number"},
        "updatedAt": {"type": "number"}}}
    message = {"type": "object", "required": ["id", "chatId", "role", "content", "createdAt"], "properties": {
        "id": {"type": "string"}, "chatId": {"type": "string"}, "role": {"enum": ["user", "assistant"]},
        "content": {"type": "string"}, "createdAt": {"type": "number"},
        "status": {"enum": ["streaming", "complete", "cancelled", "error"]},
        "finishReason": {"type": ["string", "null"]}, "upstreamClosed": {"type": "boolean"},
        "usage": {"type": "object"}, "model": {"type": "string"},
        "contextMessages": {"type": "integer", "minimum": 0},
        "agents": {"type": "array", "items": {"type": "object", "required": ["agent", "text"], "properties": {
            "agent": {"type": "string"}, "text": {"type": "string"}}}}}}
    job = {"type": "object", "required": ["id", "status", "imported", "skipped", "failed", "skippedMessages", "pollAfterMs"],
           "properties": {"id": {"type": "string"}, "status": {"type": "string"}, "total": {"type": ["integer", "null"]},
                          "imported": {"type": "integer"}, "skipped": {"type": "integer"},
                          "failed": {"type": "integer"}, "skippedMessages": {"type": "integer"},
                          "pollAfterMs": {"type": "integer"}}}
    login = {"type": "object", "required": ["user", "accessToken", "expiresIn", "csrfToken"], "properties": {
        "user": _ref("User"), "accessToken": {"type": "string"}, "expiresIn": {"type": "integer"},
        "csrfToken": {"type": "string"}}}
    api_key = {"type": "object", "required": ["id", "name", "hint", "createdAt", "lastUsedAt"], "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "hint": {"type": "string"},
        "createdAt": {"type": "number"}, "lastUsedAt": {"type": ["number", "null"]}}}
    return {
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": error_body}},
            "OpenAIError": {"type": "object", "required": ["error"], "properties": {"error": openai_error}},
            "User": user, "Chat": chat, "Message": message, "Job": job, "Login": login, "ApiKey": api_key,
        },
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "an access token (JWT) or an API key"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "gima_session"},
        },
    }


def _paths() -> dict[str, Any]:
    chat_id, message_id, job_id, key_id = _path("chatId"), _path("messageId"), _path("jobId"), _path("keyId")
    client_chat = _path("chatId", {"type": "string", "minLength": 1, "maxLength": MAX_CHAT_ID_CHARS})
    last_event = _query("lastEventId", {"type": "string", "pattern": "^[0-9]{1,12}$"})
    job = _json({"type": "object", "required": ["job"], "properties": {"job": _ref("Job")}})
    openai_body = {"type": "object", "required": ["model", "messages"], "properties": {
        "model": {"type": "string"}, "messages": {"type": "array", "minItems": 1, "items": _OPENAI_MESSAGE},
        "stream": {"type": "boolean"}, "temperature": {"type": "number"}, "user": {"type": "string"}}}
    ui_body = {"type": "object", "required": ["id", "messages"], "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": MAX_CHAT_ID_CHARS},
        "messages": {"type": "array", "minItems": 1, "items": _UI_MESSAGE},
        "trigger": {"enum": ["submit-message", "regenerate-message"]}, "messageId": {"type": "string"}}}
    batch = {"type": "object", "required": ["conversations"], "additionalProperties": False, "properties": {
        "conversations": {"type": "array", "items": {"type": "object"}}}}
    return {
        "/": {"get": _op("the chat page", {"200": {"description": "HTML", "content": {"text/html": {}}}}, public=True)},
        "/static/{path}": {"get": _op("the page's files", {"200": {"description": "a file"}}, public=True,
                                      params=[_path("path", {"type": "string"})])},
        "/health": {"get": _op("the process is up", {"200": _json({"type": "object"})}, public=True)},
        "/ready": {"get": _op("the process and its backings answer", {"200": _json({"type": "object"})}, public=True)},
        "/metrics": {"get": _op("Prometheus metrics", {"200": {"description": "text", "content": {"text/plain": {}}}},
                                public=True)},
        "/api/openapi.json": {"get": _op("this description", {"200": _json({"type": "object"})}, public=True)},
        "/api/auth/signup": {"post": _op("make an account and sign in", {"201": _json(_ref("Login"))},
                                         body=object_schema(SIGNUP_BODY), public=True)},
        "/api/auth/login": {"post": _op("sign in", {"200": _json(_ref("Login"))}, body=object_schema(LOGIN_BODY),
                                        public=True)},
        "/api/auth/guest": {"post": _op("a guest session (when GIMA_GUEST_ACCESS=on)", {"201": _json(_ref("Login"))},
                                        public=True)},
        "/api/auth/oidc/login": {"get": _op("single sign-on: go to the provider (when GIMA_OIDC_* are set)",
                                            {"302": {"description": "to the provider"}}, public=True,
                                            params=[_query("next", {"type": "string"})])},
        "/api/auth/oidc/callback": {"get": _op("single sign-on: back from the provider", {
            "302": {"description": "signed in (cookie session): to `next`"}}, public=True,
            params=[_query("code", {"type": "string"}), _query("state", {"type": "string"})])},
        "/api/auth/logout": {"post": _op("end this login session", {"204": _NO_CONTENT})},
        "/api/auth/me": {
            "get": _op("who is signed in (signed out: user null)", {"200": _json({
                "type": "object", "required": ["user"], "properties": {
                    "user": {"anyOf": [_ref("User"), {"type": "null"}]}, "canMigrate": {"type": "boolean"},
                    "plan": {"type": ["object", "null"], "properties": {
                        "name": {"type": "string"}, "tokensPerDay": {"type": ["integer", "null"]},
                        "tokensUsedToday": {"type": "integer"}, "tokensLeftToday": {"type": "integer"},
                        "resetsAt": {"type": "number"}}}}})},
                public=True),
            "delete": _op("delete the account and all its data (a password account confirms with it)",
                          {"204": _NO_CONTENT}, body=object_schema(DELETE_ACCOUNT_BODY)),
        },
        "/api/metrics/summary": {"get": _op("load summary (admins)", {"200": _json({"type": "object"})})},
        "/api/chats": {
            "post": _op("make a chat", {"201": _json({"type": "object", "required": ["chat"],
                                                        "properties": {"chat": _ref("Chat")}})},
                        body=object_schema(CHAT_BODY)),
            "get": _op("the caller's chats, newest first", {"200": _json({"type": "object", "required": ["chats"], "properties": {
                "chats": {"type": "array", "items": _ref("Chat")}, "nextCursor": {"type": ["string", "null"]}}})},
                params=[_query("before", _ID), _query("limit", {"type": "integer", "minimum": 1, "maximum": 100})]),
        },
        "/api/chats/{chatId}": {
            "delete": _op("delete a chat", {"204": _NO_CONTENT}, params=[chat_id]),
            "patch": _op("rename a chat", {"200": _json({"type": "object", "required": ["chat"],
                                                        "properties": {"chat": _ref("Chat")}})},
                         params=[chat_id], body=object_schema(RENAME_BODY)),
        },
        "/api/chats/{chatId}/messages": {"get": _op("a chat's messages, oldest first", {"200": _json({
            "type": "object", "required": ["messages"], "properties": {
                "messages": {"type": "array", "items": _ref("Message")}}})}, params=[chat_id])},
        "/api/chat/stream": {"post": _op("send a message and stream the reply", {"200": _SSE},
                                         body=object_schema(STREAM_BODY))},
        "/api/chat/streams/{messageId}/events": {"get": _op("resume a reply after Last-Event-ID",
                                                            {"200": _SSE, "204": _NO_CONTENT},
                                                            params=[message_id, last_event])},
        "/api/chat/streams/{messageId}/cancel": {"post": _op("stop a reply", {"202": _json({"type": "object"})},
                                                             params=[message_id])},
        "/api/chat": {"post": _op("AI SDK: send and stream UI message parts", {"200": _UI_SSE}, body=ui_body)},
        "/api/chat/{chatId}/stream": {"get": _op("AI SDK: replay the chat's running reply",
                                                 {"200": _UI_SSE, "204": _NO_CONTENT}, params=[client_chat])},
        "/api/chat/{chatId}/stop": {"post": _op("AI SDK: stop the chat's running reply",
                                                {"202": _json({"type": "object"}), "204": _NO_CONTENT},
                                                params=[client_chat])},
        "/api/search": {"get": _op("search the caller's messages", {"200": _json({
            "type": "object", "required": ["results", "nextCursor"], "properties": {
                "results": {"type": "array", "items": {"type": "object", "required": [
                    "messageId", "chatId", "chatTitle", "role", "createdAt", "snippet"]}},
                "nextCursor": {"type": ["string", "null"]}}})},
            params=[{"name": "q", "in": "query", "required": True, "schema": {"type": "string"}},
                    _query("mode", {"enum": ["text", "semantic", "hybrid"]}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 50}),
                    _query("cursor", {"type": "string"})])},
        "/api/keys": {
            "post": _op("make an API key (shown once)", {"201": _json({"type": "object", "required": [
                "id", "name", "key", "createdAt"]})}, body=object_schema(KEY_BODY)),
            "get": _op("the caller's API keys", {"200": _json({"type": "object", "required": ["keys"], "properties": {
                "keys": {"type": "array", "items": _ref("ApiKey")}}})}),
        },
        "/api/keys/{keyId}": {"delete": _op("delete an API key", {"204": _NO_CONTENT}, params=[key_id])},
        "/api/models": {"get": _op("the models a reply may name", {"200": _json({
            "type": "object", "required": ["models", "voice"], "properties": {"models": {"type": "array", "items": {
                "type": "object", "required": ["id", "label", "default"]}}, "voice": {"type": "boolean"}}})})},
        "/v1/models": {"get": _op("OpenAI: the models", {"200": _json({"type": "object", "required": ["object", "data"]})},
                                  error=_OPENAI_ERROR)},
        "/v1/embeddings": {"post": _op("OpenAI: embeddings (404 unless an embeddings upstream is configured)", {
            "200": _json({"type": "object", "required": ["object", "data"]})}, body={
                "type": "object", "required": ["model", "input"], "properties": {
                    "model": {"type": "string"}, "input": {"anyOf": [{"type": "string"}, {"type": "array"}]},
                    "encoding_format": {"enum": ["float", "base64"]}, "dimensions": {"type": "integer"}}},
            error=_OPENAI_ERROR)},
        "/v1/audio/transcriptions": {"post": _op("OpenAI: speech to text (404 unless an audio upstream is configured)", {
            "200": _json({"type": "object"})}, error=_OPENAI_ERROR, body_content={"multipart/form-data": {"schema": {
                "type": "object", "required": ["file", "model"], "properties": {
                    "file": {"type": "string", "format": "binary"}, "model": {"type": "string"},
                    "language": {"type": "string"}, "response_format": {"type": "string"}}}}})},
        "/v1/audio/speech": {"post": _op("OpenAI: text to speech (404 unless an audio upstream is configured)", {
            "200": {"description": "audio bytes", "content": {"audio/mpeg": {}}}}, body={
                "type": "object", "required": ["model", "input", "voice"], "properties": {
                    "model": {"type": "string"}, "input": {"type": "string", "maxLength": 4096},
                    "voice": {"type": "string"}, "response_format": {"enum": ["mp3", "opus", "aac", "flac", "wav", "pcm"]},
                    "speed": {"type": "number", "minimum": 0.25, "maximum": 4}}}, error=_OPENAI_ERROR)},
        "/v1/chat/completions": {"post": _op("OpenAI: a chat completion", {
            "200": {"description": "a chat.completion, or chunks when streamed", "content": {
                "application/json": {"schema": {"type": "object", "required": ["id", "object", "choices"]}},
                "text/event-stream": {"schema": _DIALECT_EVENT}}}}, body=openai_body, error=_OPENAI_ERROR)},
        "/ws": {"get": _op("WebSocket (upgrade)", {"101": {"description": "switching protocols"}})},
        "/api/hooks/replies/{replyId}/events": {"post": _op(
            "a webhook agent's backend delivers a reply's events (Standard Webhooks signature with the agent's "
            "secret; 401 if it does not verify, 409 once the reply has ended)",
            {"202": _json({"type": "object", "properties": {"accepted": {"type": "integer"}}}),
             "200": _json({"type": "object", "properties": {"duplicate": {"type": "boolean"}}})},
            body={"type": "object", "required": ["events"], "properties": {"events": {
                "type": "array", "minItems": 1, "maxItems": 1000, "items": {"type": "object", "required": ["type"]}}}},
            public=True, params=[{"name": "replyId", "in": "path", "required": True, "schema": {"type": "string"}}])},
        "/api/webhooks/stripe": {"post": _op(
            "Stripe subscription events set users' plans (Stripe-Signature verified; 404 without "
            "GIMA_STRIPE_WEBHOOK_SECRET)", {"200": _json({"type": "object", "required": ["received"], "properties": {
                "received": {"type": "boolean"}, "handled": {"type": "boolean"}, "duplicate": {"type": "boolean"},
                "plan": {"type": ["string", "null"]}}})},
            body={"type": "object"}, public=True,
            params=[{"name": "Stripe-Signature", "in": "header", "required": True, "schema": {"type": "string"}}])},
        "/api/migration/jobs": {"post": _op("start an import (alpha)", {"201": job}, body=object_schema(JOB_BODY))},
        "/api/migration/jobs/{jobId}": {"get": _op("an import's progress", {"200": job}, params=[job_id])},
        "/api/migration/jobs/{jobId}/batches/{seq}": {"put": _op("queue a batch of conversations", {"202": job},
                                                                 body=batch, params=[job_id, _path("seq", {
                                                                     "type": "integer", "minimum": 0})])},
        "/api/migration/jobs/{jobId}/complete": {"post": _op("no more batches", {"202": job}, params=[job_id])},
    }


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "gima-server", "version": __version__,
                 "description": "Streaming chat server: native SSE, WebSocket, OpenAI Chat Completions and the AI "
                                "SDK's UI message stream over the same resumable replies. Prose: docs/api.md."},
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": _paths(),
        "components": _components(),
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi_json)
