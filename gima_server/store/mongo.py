"""MongoDB store on PyMongo's async API (pymongo.AsyncMongoClient), selected by GIMA_STORE_URL=mongodb://...

Writes that must be all-or-nothing (an exchange, a migration batch) run in a transaction, so the server must
be a replica set (a single-node one is enough). Indexes are created at start-up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, InsertOne, ReturnDocument
from pymongo.errors import DuplicateKeyError

from ..apikeys.model import ApiKey
from ..migration.model import STATE_FIELDS, ImportedConversation, MigrationJob, message_times
from ..webhooks.model import event_body, reply_event
from .base import AuthSession, Chat, DuplicateError, Exchange, Message, Receipt, SchemaError, SearchHit, User
from .mongo_webhooks import MongoWebhooksMixin


@dataclass(frozen=True, slots=True)
class MongoPool:
    max_pool_size: int = 50
    min_pool_size: int = 5
    wait_queue_timeout_ms: int = 30_000
    max_idle_time_ms: int = 3_600_000
    server_selection_timeout_ms: int = 5_000


def _new_id() -> str:
    return uuid.uuid4().hex


def _user(d: dict[str, Any]) -> User:
    return User(d["_id"], d["email"], d["name"], d["password_hash"], tuple(d["roles"]), d["created_at"], d.get("plan"))


def _mongo_snippet(content: str, terms: Sequence[str], width: int = 80) -> str:
    """Text around the first matched term, terms marked as SQLite's snippet() marks them (\x02 … \x03)."""
    lowered = content.lower()
    found = min((i for i in (lowered.find(t.lower()) for t in terms) if i >= 0), default=0)
    start = max(0, found - width // 2)
    piece = content[start:start + width]
    for term in terms:
        piece = re.sub(re.escape(term), lambda m: "\x02" + m.group(0) + "\x03", piece, flags=re.IGNORECASE)
    return ("…" if start else "") + piece + ("…" if start + width < len(content) else "")


def _api_key(d: dict[str, Any]) -> ApiKey:
    return ApiKey(d["_id"], d["user_id"], d["name"], d["key_hash"], d["hint"], d["created_at"], d.get("last_used_at"))


def _chat(d: dict[str, Any]) -> Chat:
    return Chat(d["_id"], d["user_id"], d["title"], d["created_at"], d["updated_at"])


def _vector_field(model: str) -> str:
    """A field name for a model's vector (model names may hold dots and dollars, which field paths may not)."""
    return "vec_" + hashlib.sha256(model.encode()).hexdigest()[:16]


def _message(d: dict[str, Any]) -> Message:
    return Message(d["_id"], d["chat_id"], d["user_id"], d["role"], d["content"], d["status"], d["created_at"],
                   d.get("finish_reason"), d.get("event_count", 0), d.get("input_tokens"), d.get("output_tokens"),
                   Receipt(**d["receipt"]) if d.get("receipt") else None,
                   tuple((str(a), int(o)) for a, o in d.get("sections") or ()), d.get("model"),
                   d.get("context_messages"))


MONGO_STEPS = ((1, "collections' indexes, as made at every start before numbered steps"),
               (2, "outgoing webhooks: the deliveries' indexes"))
MONGO_LATEST = MONGO_STEPS[-1][0]


class MongoStore(MongoWebhooksMixin):
    def __init__(self, url: str, pool: MongoPool = MongoPool(), database: str | None = None) -> None:
        self._client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url,
            maxPoolSize=pool.max_pool_size,
            minPoolSize=pool.min_pool_size,
            waitQueueTimeoutMS=pool.wait_queue_timeout_ms,
            maxIdleTimeMS=pool.max_idle_time_ms,
            serverSelectionTimeoutMS=pool.server_selection_timeout_ms,
            connect=False,
        )
        self._db = self._client[database] if database else self._client.get_default_database(default="gima")

    async def drop_database(self) -> None:
        """For tests: remove everything this store wrote."""
        await self._client.drop_database(self._db.name)

    async def schema_version(self) -> int:
        doc = await self._db.schema.find_one({"_id": "version"})
        return int(doc["version"]) if doc else 0

    async def pending_steps(self) -> list[tuple[int, str]]:
        """The numbered steps this database lacks; SchemaError when it is newer than this code."""
        current = await self.schema_version()
        if current > MONGO_LATEST:
            raise SchemaError(f"the MongoDB database {self._db.name} has schema version {current}, newer than this "
                              f"gima-server's {MONGO_LATEST}: run the gima-server version that made it")
        return [(number, what) for number, what in MONGO_STEPS if number > current]

    async def open(self) -> None:
        """Numbered steps, like the SQLite store's: each is idempotent (index creation), so processes starting at
        once need no lock; the recorded version only grows ($max)."""
        for number, _ in await self.pending_steps():
            await self._step(number)
            await self._db.schema.update_one({"_id": "version"}, {"$max": {"version": number}}, upsert=True)

    async def _step(self, number: int) -> None:
        if number == 2:
            await self._webhook_indexes()
            return
        if number != 1:
            raise SchemaError(f"no MongoDB schema step {number}")
        db = self._db
        await db.users.create_index("email", unique=True)
        await db.sessions.create_index("user_id")
        await db.api_keys.create_index("key_hash", unique=True)
        await db.api_keys.create_index([("user_id", ASCENDING), ("created_at", DESCENDING)])
        await db.chats.create_index([("user_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)])
        await db.messages.create_index([("chat_id", ASCENDING), ("created_at", ASCENDING), ("seq", ASCENDING)])
        await db.messages.create_index([("content", "text"), ("user_id", ASCENDING)])
        await db.messages.create_index(
            [("created_at", ASCENDING)], name="streaming", partialFilterExpression={"status": "streaming"}
        )
        await db.migration_jobs.create_index("finished")
        await db.migration_batches.create_index([("job_id", ASCENDING), ("status", ASCENDING), ("seq", ASCENDING)])

    async def close(self) -> None:
        await self._client.close()

    async def ping(self) -> None:
        await self._db.command("ping")

    # users and sessions
    async def create_user(self, email: str, password_hash: str, name: str, roles: Sequence[str]) -> User:
        doc = {"_id": _new_id(), "email": email, "name": name, "password_hash": password_hash, "roles": list(roles),
               "created_at": time.time()}
        try:
            await self._db.users.insert_one(doc)
        except DuplicateKeyError as exc:
            raise DuplicateError(email) from exc
        user = _user(doc)
        await self._fan_out("user.created", event_body("user.created", user.webhook_data(), user.created_at),
                            user.created_at)
        return user

    async def set_plan_from_event(self, event_id: str, user_id: str | None, plan: str | None, at: float) -> bool | None:
        """The id first, then the plan (no transaction: a failure between the two loses that event's change)."""
        try:
            await self._db.stripe_events.insert_one({"_id": event_id, "received_at": time.time()})
        except DuplicateKeyError:
            return None
        return user_id is not None and await self.set_plan(user_id, plan, at)

    async def set_plan(self, user_id: str, plan: str | None, at: float) -> bool:
        result = await self._db.users.update_one(
            {"_id": user_id, "$or": [{"plan_at": None}, {"plan_at": {"$lte": at}}]},
            {"$set": {"plan": plan, "plan_at": at}})
        return result.matched_count > 0

    async def get_user(self, user_id: str) -> User | None:
        doc = await self._db.users.find_one({"_id": user_id})
        return _user(doc) if doc else None

    async def get_user_by_email(self, email: str) -> User | None:
        doc = await self._db.users.find_one({"email": email})
        return _user(doc) if doc else None

    async def set_roles(self, user_id: str, roles: Sequence[str]) -> User | None:
        doc = await self._db.users.find_one_and_update(
            {"_id": user_id}, {"$set": {"roles": list(roles)}}, return_document=ReturnDocument.AFTER
        )
        return _user(doc) if doc else None

    async def create_session(self, user_id: str, ttl_s: float) -> AuthSession:
        now = time.time()
        session = AuthSession(_new_id(), user_id, now, now + ttl_s, False)
        await self._db.sessions.insert_one({"_id": session.id, "user_id": user_id, "created_at": now,
                                            "expires_at": session.expires_at, "revoked": False})
        return session

    async def get_session(self, session_id: str) -> AuthSession | None:
        d = await self._db.sessions.find_one({"_id": session_id})
        return AuthSession(d["_id"], d["user_id"], d["created_at"], d["expires_at"], d["revoked"]) if d else None

    async def get_session_user(self, session_id: str) -> tuple[AuthSession, User] | None:
        session = await self.get_session(session_id)
        user = await self.get_user(session.user_id) if session is not None else None
        return (session, user) if session is not None and user is not None else None

    async def revoke_session(self, session_id: str) -> None:
        await self._db.sessions.update_one({"_id": session_id}, {"$set": {"revoked": True}})

    async def delete_guests(self, created_before: float) -> int:
        expired = {"roles": ["guest"], "created_at": {"$lt": created_before}}
        ids = [d["_id"] async for d in self._db.users.find(expired, {"_id": 1})]
        if ids:
            await self._delete_users(ids)
        now = time.time()
        for user_id in ids:
            await self._fan_out("user.deleted", event_body("user.deleted", {"userId": user_id}, now), now)
        return len(ids)

    async def delete_user(self, user_id: str) -> bool:
        if not await self._delete_users([user_id]):
            return False
        now = time.time()
        await self._fan_out("user.deleted", event_body("user.deleted", {"userId": user_id}, now), now)
        return True

    async def _delete_users(self, ids: list[str]) -> int:
        """Their data first, the accounts last: a failure half-way leaves accounts that can be deleted again."""
        owned = {"user_id": {"$in": ids}}
        jobs = [d["_id"] async for d in self._db.migration_jobs.find(owned, {"_id": 1})]
        await self._db.migration_batches.delete_many({"job_id": {"$in": jobs}})
        for collection in ("messages", "chats", "sessions", "api_keys", "migration_jobs"):
            await self._db[collection].delete_many(owned)
        for user_id in ids:  # keyed "<user id>:<content hash>", without a user_id field
            await self._db.imported_conversations.delete_many({"_id": {"$regex": f"^{re.escape(user_id)}:"}})
        return int((await self._db.users.delete_many({"_id": {"$in": ids}})).deleted_count)

    async def list_sessions(self, user_id: str) -> list[AuthSession]:
        cursor = self._db.sessions.find({"user_id": user_id}).sort([("created_at", DESCENDING), ("_id", ASCENDING)])
        return [AuthSession(d["_id"], d["user_id"], d["created_at"], d["expires_at"], bool(d["revoked"]))
                async for d in cursor]

    # API keys
    async def create_api_key(self, key: ApiKey, max_per_user: int) -> bool:
        # Counted, then inserted: two concurrent creations may pass one over the cap (a soft limit on MongoDB).
        if await self._db.api_keys.count_documents({"user_id": key.user_id}) >= max_per_user:
            return False
        await self._db.api_keys.insert_one({"_id": key.id, "user_id": key.user_id, "name": key.name,
                                            "key_hash": key.key_hash, "hint": key.hint, "created_at": key.created_at,
                                            "last_used_at": None})
        return True

    async def list_api_keys(self, user_id: str) -> list[ApiKey]:
        cursor = self._db.api_keys.find({"user_id": user_id}).sort([("created_at", DESCENDING), ("_id", ASCENDING)])
        return [_api_key(d) async for d in cursor]

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        d = await self._db.api_keys.find_one({"key_hash": key_hash})
        return _api_key(d) if d else None

    async def delete_api_key(self, user_id: str, key_id: str) -> bool:
        result = await self._db.api_keys.delete_one({"_id": key_id, "user_id": user_id})
        return bool(result.deleted_count)

    async def api_key_owner(self, key_id: str) -> str | None:
        d = await self._db.api_keys.find_one({"_id": key_id}, {"user_id": 1})
        return str(d["user_id"]) if d else None

    async def touch_api_key(self, key_id: str, used_at: float) -> None:
        await self._db.api_keys.update_one({"_id": key_id}, {"$set": {"last_used_at": used_at}})

    # chats
    async def create_chat(self, user_id: str, title: str) -> Chat:
        now = time.time()
        doc = {"_id": _new_id(), "user_id": user_id, "title": title, "created_at": now, "updated_at": now, "next_seq": 0}
        await self._db.chats.insert_one(doc)
        return _chat(doc)

    async def get_chat(self, user_id: str, chat_id: str) -> Chat | None:
        doc = await self._db.chats.find_one({"_id": chat_id, "user_id": user_id})
        return _chat(doc) if doc else None

    async def list_chats(self, user_id: str, before_chat_id: str | None, limit: int) -> list[Chat]:
        query: dict[str, Any] = {"user_id": user_id}
        if before_chat_id is not None:
            anchor = await self._db.chats.find_one({"_id": before_chat_id, "user_id": user_id})
            if anchor is None:
                return []
            query["$or"] = [{"created_at": {"$lt": anchor["created_at"]}},
                            {"created_at": anchor["created_at"], "_id": {"$lt": anchor["_id"]}}]
        cursor = self._db.chats.find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return [_chat(d) for d in await cursor.to_list(length=None)]

    async def rename_chat(self, user_id: str, chat_id: str, title: str) -> Chat | None:
        doc = await self._db.chats.find_one_and_update(
            {"_id": chat_id, "user_id": user_id}, {"$set": {"title": title, "updated_at": time.time()}},
            return_document=ReturnDocument.AFTER)
        return _chat(doc) if doc else None

    async def delete_chat(self, user_id: str, chat_id: str) -> bool:
        async with self._client.start_session() as session, await session.start_transaction():
            result = await self._db.chats.delete_one({"_id": chat_id, "user_id": user_id}, session=session)
            if not result.deleted_count:
                return False
            await self._db.messages.delete_many({"chat_id": chat_id}, session=session)
            return True

    # messages
    async def message_owner(self, message_id: str) -> str | None:
        doc = await self._db.messages.find_one({"_id": message_id}, {"user_id": 1})
        return str(doc["user_id"]) if doc else None

    async def begin_exchange(self, exchange: Exchange) -> None:
        ex = exchange
        async with self._client.start_session() as session, await session.start_transaction():
            if ex.new_chat_title is not None:
                await self._db.chats.insert_one({"_id": ex.chat_id, "user_id": ex.user_id, "title": ex.new_chat_title,
                                                 "created_at": ex.created_at, "updated_at": ex.created_at, "next_seq": 2},
                                                session=session)
                seq = 0
            else:
                chat = await self._db.chats.find_one_and_update(
                    {"_id": ex.chat_id, "user_id": ex.user_id},
                    {"$set": {"updated_at": ex.created_at}, "$inc": {"next_seq": 2}},
                    session=session,
                )
                if chat is None:
                    raise LookupError(f"chat {ex.chat_id} not found")
                seq = int(chat.get("next_seq", 0))
            common = {"chat_id": ex.chat_id, "user_id": ex.user_id, "created_at": ex.created_at, "fence": ex.fence}
            try:
                await self._db.messages.insert_many([
                    {"_id": ex.user_message_id, "role": "user", "content": ex.content, "status": "complete",
                     "seq": seq + 1, **common},
                    {"_id": ex.reply_message_id, "role": "assistant", "content": "", "status": "streaming",
                     "seq": seq + 2, "model": ex.model or None, "context_messages": ex.context_messages, **common},
                ], session=session)
            except DuplicateKeyError as exc:
                raise DuplicateError(ex.reply_message_id) from exc

    async def get_message(self, user_id: str, message_id: str) -> Message | None:
        doc = await self._db.messages.find_one({"_id": message_id, "user_id": user_id})
        return _message(doc) if doc else None

    async def list_messages(self, user_id: str, chat_id: str) -> list[Message]:
        cursor = self._db.messages.find({"chat_id": chat_id, "user_id": user_id}).sort(
            [("created_at", ASCENDING), ("seq", ASCENDING)]
        )
        return [_message(d) for d in await cursor.to_list(length=None)]

    async def recent_messages(self, user_id: str, chat_id: str, limit: int,
                              before_id: str | None = None) -> list[Message]:
        where: dict[str, Any] = {"chat_id": chat_id, "user_id": user_id}
        if before_id is not None:
            before = await self._db.messages.find_one({"_id": before_id, "chat_id": chat_id})
            if before is None:
                return []
            where["$or"] = [{"created_at": {"$lt": before["created_at"]}},
                            {"created_at": before["created_at"], "seq": {"$lt": before["seq"]}}]
        cursor = self._db.messages.find(where).sort([("created_at", DESCENDING), ("seq", DESCENDING)]).limit(limit)
        return [_message(d) for d in await cursor.to_list(length=None)]

    async def checkpoint_reply(self, message_id: str, content: str, fence: int = 0) -> bool:
        result = await self._db.messages.update_one(
            {"_id": message_id, "status": "streaming", "fence": {"$lte": fence}},
            {"$set": {"content": content, "fence": fence}},
        )
        return result.matched_count > 0

    async def finish_reply(
        self,
        message_id: str,
        content: str,
        status: str,
        finish_reason: str | None,
        event_count: int,
        fence: int = 0,
        usage: tuple[int, int] | None = None,
        receipt: Receipt | None = None,
        sections: Sequence[tuple[str, int]] = (),
        model: str | None = None,
        webhook: tuple[str, str] | None = None,
    ) -> bool:
        update: dict[str, Any] = {
                  "content": content, "status": status, "finish_reason": finish_reason, "event_count": event_count,
                  "fence": fence, "input_tokens": usage[0] if usage else None, "output_tokens": usage[1] if usage else None,
                  "receipt": dataclasses.asdict(receipt) if receipt is not None else None,
                  "sections": [[agent, offset] for agent, offset in sections] or None}
        if model is not None:
            update["model"] = model
        result = await self._db.messages.update_one({"_id": message_id, "fence": {"$lte": fence}}, {"$set": update})
        if result.matched_count > 0 and webhook is not None:
            await self._fan_out(webhook[0], webhook[1], time.time())
        return result.matched_count > 0

    # Semantic search: a message keeps its vectors in its own document (deleted with it), one field per model.
    async def messages_to_embed(self, model: str, limit: int, user_id: str | None = None) -> list[tuple[str, str, str]]:
        query: dict[str, Any] = {"status": {"$ne": "streaming"}, "content": {"$ne": ""},
                                 _vector_field(model): {"$exists": False}}
        if user_id is not None:
            query["user_id"] = user_id
        cursor = self._db.messages.find(query, {"user_id": 1, "content": 1}).limit(limit)
        return [(d["_id"], d["user_id"], d["content"]) async for d in cursor]

    async def save_vectors(self, model: str, vectors: Sequence[tuple[str, bytes]]) -> int:
        saved = 0
        for message_id, blob in vectors:
            result = await self._db.messages.update_one(
                {"_id": message_id, _vector_field(model): {"$exists": False}}, {"$set": {_vector_field(model): blob}})
            saved += result.modified_count
        return saved

    async def user_vectors(self, user_id: str, model: str) -> list[tuple[str, bytes]]:
        field = _vector_field(model)
        cursor = self._db.messages.find({"user_id": user_id, field: {"$exists": True}}, {field: 1})
        return [(d["_id"], bytes(d[field])) async for d in cursor]

    async def search_hits(self, user_id: str, message_ids: Sequence[str]) -> list[SearchHit]:
        hits: dict[str, SearchHit] = {}
        async for d in self._db.messages.find({"_id": {"$in": list(message_ids)}, "user_id": user_id}):
            chat = await self._db.chats.find_one({"_id": d["chat_id"]}, {"title": 1})
            hits[d["_id"]] = SearchHit(d["_id"], d["chat_id"], chat["title"] if chat else "", d["role"],
                                       d["created_at"], d["content"][:200])
        return [hits[i] for i in message_ids if i in hits]

    async def search_messages(self, user_id: str, terms: Sequence[str], limit: int, offset: int) -> list[SearchHit]:
        phrase = " ".join('"' + term.replace('"', " ") + '"' for term in terms)  # quoted: every term required
        query = {"$text": {"$search": phrase}, "user_id": user_id, "status": {"$ne": "streaming"}}
        cursor = (self._db.messages.find(query, {"score": {"$meta": "textScore"}})
                  .sort([("score", {"$meta": "textScore"}), ("created_at", DESCENDING)]).skip(offset).limit(limit))
        hits = []
        async for d in cursor:
            chat = await self._db.chats.find_one({"_id": d["chat_id"]}, {"title": 1})
            hits.append(SearchHit(d["_id"], d["chat_id"], chat["title"] if chat else "", d["role"], d["created_at"],
                                  _mongo_snippet(d["content"], terms)))
        return hits

    async def list_streaming_replies(self, limit: int) -> list[Message]:
        cursor = self._db.messages.find({"status": "streaming"}).sort("created_at", ASCENDING).limit(limit)
        return [_message(d) for d in await cursor.to_list(length=None)]

    async def interrupt_reply(self, message_id: str, content: str | None, event_count: int) -> bool:
        update: dict[str, Any] = {"status": "error", "finish_reason": "interrupted", "event_count": event_count}
        if content is not None:
            update["content"] = content
        doc = await self._db.messages.find_one_and_update({"_id": message_id, "status": "streaming"}, {"$set": update})
        if doc is None:
            return False
        now = time.time()
        await self._fan_out(*reply_event(message_id, doc["chat_id"], doc["user_id"], doc.get("model"), "error",
                                         "interrupted", None, now), now)
        return True

    # migration
    async def create_migration_job(self, job: MigrationJob) -> None:
        await self._db.migration_jobs.insert_one({"_id": job.id, "user_id": job.user_id, "finished": False,
                                                  "data": dataclasses.asdict(job)})

    async def get_migration_job(self, user_id: str, job_id: str) -> MigrationJob | None:
        doc = await self._db.migration_jobs.find_one({"_id": job_id, "user_id": user_id})
        return MigrationJob(**doc["data"]) if doc else None

    async def save_migration_state(self, job: MigrationJob) -> MigrationJob | None:
        # One conditional update: a finished job is never written again; counts are left as stored.
        if job.status == "done" and await self._db.migration_batches.count_documents(
                {"job_id": job.id, "status": "queued"}, limit=1):
            doc = await self._db.migration_jobs.find_one({"_id": job.id})
            return MigrationJob(**doc["data"]) if doc else None  # a batch got in before the job could end
        await self._db.migration_jobs.update_one(
            {"_id": job.id, "finished": False},
            {"$set": {**{f"data.{name}": getattr(job, name) for name in STATE_FIELDS  # a completion is never undone
                         if name != "complete_requested" or job.complete_requested}, "finished": job.finished}},
        )
        doc = await self._db.migration_jobs.find_one({"_id": job.id})
        return MigrationJob(**doc["data"]) if doc else None

    async def unfinished_migration_jobs(self) -> list[MigrationJob]:
        docs = await self._db.migration_jobs.find({"finished": False}).to_list(length=None)
        return [MigrationJob(**d["data"]) for d in docs]

    async def add_migration_batch(self, job_id: str, seq: int, payload: str) -> bool:
        # Checked, then inserted: unlike SQL here a batch racing a finishing job is not excluded (MongoDB).
        if await self._db.migration_jobs.count_documents({"_id": job_id, "finished": False}) == 0:
            return False
        try:
            await self._db.migration_batches.insert_one(
                {"_id": f"{job_id}:{seq}", "job_id": job_id, "seq": seq, "payload": payload, "status": "queued"}
            )
        except DuplicateKeyError:
            return False
        return True

    async def next_migration_batch(self, job_id: str) -> tuple[int, str] | None:
        doc = await self._db.migration_batches.find_one({"job_id": job_id, "status": "queued"}, sort=[("seq", ASCENDING)])
        return (int(doc["seq"]), str(doc["payload"])) if doc else None

    async def pending_migration_batches(self, job_id: str) -> int:
        return int(await self._db.migration_batches.count_documents({"job_id": job_id, "status": "queued"}))

    async def import_migration_batch(
        self, job: MigrationJob, seq: int, conversations: Sequence[ImportedConversation]
    ) -> tuple[int, int]:
        imported = skipped = 0
        async with self._client.start_session() as session, await session.start_transaction():
            chats, messages = [], []
            for conversation in conversations:
                if not conversation.messages:
                    skipped += 1  # nothing of a role that is imported
                    continue
                chat_id = _new_id()
                try:
                    await self._db.imported_conversations.insert_one(
                        {"_id": f"{job.user_id}:{conversation.content_hash}", "chat_id": chat_id}, session=session
                    )
                except DuplicateKeyError:
                    skipped += 1  # imported before: never rewritten
                    continue
                imported += 1
                created = conversation.created_at or time.time()
                chats.append(InsertOne({"_id": chat_id, "user_id": job.user_id, "title": conversation.title,
                                        "created_at": created, "updated_at": created,
                                        "next_seq": len(conversation.messages)}))
                messages += [InsertOne({"_id": _new_id(), "chat_id": chat_id, "user_id": job.user_id, "role": m.role,
                                        "content": m.content, "status": "complete", "seq": i + 1, "fence": 0,
                                        "created_at": at, "finish_reason": "stop" if m.role == "assistant" else None})
                             for i, (m, at) in enumerate(zip(conversation.messages, message_times(conversation, created),
                                                              strict=True))]
            if chats:
                await self._db.chats.bulk_write(chats, ordered=False, session=session)
                await self._db.messages.bulk_write(messages, ordered=False, session=session)
            await self._db.migration_batches.update_one(
                {"_id": f"{job.id}:{seq}"}, {"$set": {"status": "done", "payload": ""}}, session=session
            )
            added = job.counted(imported, skipped, conversations)
            doc = await self._db.migration_jobs.find_one_and_update(  # added to the stored counts, not job's copy
                {"_id": job.id},
                {"$inc": {"data.imported": imported, "data.skipped": skipped,
                          "data.skipped_messages": added.skipped_messages - job.skipped_messages}},
                return_document=ReturnDocument.AFTER, session=session,
            )
            counted = MigrationJob(**doc["data"]) if doc else added
        job.absorb(counted)  # only once the transaction has committed
        return imported, skipped

    async def fail_migration_batch(self, job_id: str, seq: int) -> None:
        await self._db.migration_batches.update_one({"_id": f"{job_id}:{seq}"}, {"$set": {"status": "failed"}})
