"""What the migration lane needs from the store (SQLite here; the MongoDB store implements it too)."""

from __future__ import annotations

from typing import Protocol, Sequence

from .model import ImportedConversation, MigrationJob


class MigrationStore(Protocol):
    async def create_migration_job(self, job: MigrationJob) -> None: ...
    async def get_migration_job(self, user_id: str, job_id: str) -> MigrationJob | None: ...
    async def save_migration_state(self, job: MigrationJob) -> MigrationJob | None:
        """Write job's state (STATE_FIELDS) onto the stored job unless that one is finished, leaving its counts
        as stored, in one step; "done" is not written while a batch is queued. Returns the stored job as it now
        is (None when there is none)."""
        ...

    async def unfinished_migration_jobs(self) -> list[MigrationJob]: ...

    async def add_migration_batch(self, job_id: str, seq: int, payload: str) -> bool:
        """Queue a validated batch; False (and nothing changed) when this seq was queued before or the job is
        finished. A job cannot finish while a batch is being added: one or the other comes first."""
        ...

    async def next_migration_batch(self, job_id: str) -> tuple[int, str] | None: ...
    async def pending_migration_batches(self, job_id: str) -> int: ...

    async def import_migration_batch(
        self, job: MigrationJob, seq: int, conversations: Sequence[ImportedConversation]
    ) -> tuple[int, int]:
        """All or nothing: make chats of the new conversations, skip those already imported (same content hash),
        mark the batch done and add to the stored job's counters (job takes them after the commit), in one
        transaction. Returns (imported, skipped)."""
        ...

    async def fail_migration_batch(self, job_id: str, seq: int) -> None: ...
