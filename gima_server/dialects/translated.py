"""A reply's event log as another dialect's frames, translated as a subscriber reads them."""

from __future__ import annotations

import json
from typing import Any, Protocol, Sequence, overload

from ..streams.events import Event
from ..streams.reply import EventSource, Pushable


def event_data(event: Event) -> dict[str, Any]:
    """The data of a logged event (kept only as its frame: see events.Event)."""
    start = event.frame.index(b"\ndata: ") + len(b"\ndata: ")
    data: dict[str, Any] = json.loads(event.frame[start:].rstrip(b"\n"))
    return data


class Encoder(Protocol):
    def encode(self, event_id: int, name: str, data: dict[str, Any]) -> bytes:
        """The dialect's frames for one native event (none, one or several), in order."""
        ...


class _Translated(Sequence[Event]):
    """events[i] is the i-th native event with its frame in the dialect: translated once, on first read, in order
    (encoders keep state, such as which text part is open)."""

    def __init__(self, inner: EventSource, encoder: Encoder) -> None:
        self._inner = inner
        self._encoder = encoder
        self._done: list[Event] = []

    def _catch_up(self, upto: int) -> None:
        native = self._inner.events
        while len(self._done) < min(upto, len(native)):
            event = native[len(self._done)]
            self._done.append(Event(event.id, event.name, self._encoder.encode(event.id, event.name, event_data(event))))

    def __len__(self) -> int:
        return len(self._inner.events)

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        self._catch_up(len(self._inner.events))
        return self._done[index]


class TranslatedSource:
    """An EventSource whose frames are in another dialect; waiting and closing go to the reply's own source."""

    def __init__(self, inner: EventSource, encoder: Encoder) -> None:
        self._inner = inner
        self.events = _Translated(inner, encoder)

    @property
    def finished(self) -> bool:
        return self._inner.finished

    async def wait_beyond(self, cursor: int) -> None:
        await self._inner.wait_beyond(cursor)

    def subscribe(self, subscriber: Pushable) -> None:
        self._inner.subscribe(subscriber)

    def unsubscribe(self, subscriber: Pushable) -> None:
        self._inner.unsubscribe(subscriber)

    def close(self) -> None:
        self._inner.close()
