"""One heartbeat for all streams: quiet ones get `: ping`, busy, backed-up and closed ones do not; a closed one is
told that its client is gone."""

from __future__ import annotations

from gima_server.streams.heartbeat import PING, Heartbeat


class Stream:
    def __init__(self, last_write: float, backed_up: bool = False, gone: bool = False) -> None:
        self.last_write = last_write
        self.backed_up = backed_up
        self.gone = gone
        self.written: list[bytes] = []
        self.told_lost = False

    def can_write_now(self, size: int) -> bool:
        return not self.backed_up

    async def write(self, data: bytes) -> None:
        if self.gone:
            raise ConnectionResetError
        self.written.append(data)

    def lost(self) -> None:
        self.told_lost = True


async def test_only_quiet_writable_streams_are_pinged_and_closed_ones_are_dropped() -> None:
    heartbeat = Heartbeat(15.0)
    quiet, busy, backed_up, gone = Stream(100.0), Stream(190.0), Stream(100.0, backed_up=True), Stream(100.0, gone=True)
    for stream in (quiet, busy, backed_up, gone):
        heartbeat.add(stream)
    assert await heartbeat.tick(quiet_since=180.0) == 1
    assert quiet.written == [PING] and quiet.last_write > 180.0
    assert busy.written == [] and backed_up.written == [] and gone.written == []
    assert len(heartbeat) == 3  # the closed one is forgotten
    assert gone.told_lost and not any(s.told_lost for s in (quiet, busy, backed_up))
    heartbeat.discard(busy)
    assert len(heartbeat) == 2
