"""Server-made chat ids tell their age; no other id is taken for a recent one; server-made message ids sort by the
time they were made (their rows are appended to the id index, not scattered over it)."""

from __future__ import annotations

import time

from gima_server.ids import chat_id_age_s, is_valid_id, new_chat_id, new_id, new_message_id


def test_a_new_chat_id_is_a_valid_id_of_the_old_length_and_reads_as_just_made() -> None:
    chat_id = new_chat_id()
    assert is_valid_id(chat_id) and len(chat_id) == len(new_id()) == 32
    age = chat_id_age_s(chat_id)
    assert age is not None and -0.01 <= age < 1.0
    assert new_chat_id() != chat_id


def test_an_id_made_a_minute_ago_reads_as_a_minute_old() -> None:
    made_ms = int((time.time() - 60) * 1000)
    age = chat_id_age_s(f"{made_ms:012x}{'ab' * 10}")
    assert age is not None and 59 < age < 61


def test_random_ids_old_ids_client_ids_and_far_future_ones_have_no_age() -> None:
    future_ms = int((time.time() + 600) * 1000)
    for value in (new_id(), "0123456789abcdef0123456789abcdef", "chat-from-the-ai-sdk", "zz" * 16,
                  f"{future_ms:012x}{'00' * 10}"):
        assert chat_id_age_s(value) is None, value


def test_message_ids_made_later_sort_later_and_never_repeat() -> None:
    spaced = []
    for _ in range(20):
        spaced.append(new_message_id())
        time.sleep(0.002)  # the next one in a later millisecond
    assert spaced == sorted(spaced)
    at_once = [new_message_id() for _ in range(1000)]
    assert len(set(at_once)) == len(at_once)
    assert all(is_valid_id(m) and len(m) == 32 for m in spaced + at_once)


def test_ids_read_ahead_are_never_handed_out_twice_across_threads_and_a_fork() -> None:
    import os
    import threading

    made: list[list[str]] = [[] for _ in range(8)]

    def make(out: list[str]) -> None:
        for _ in range(2_000):
            out.append(new_id())
            out.append(new_message_id()[12:])

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [value for out in made for value in out]
    assert len(set(everything)) == len(everything) == 32_000
    assert all(len(v) == 32 for v in everything[::2]) and all(len(v) == 20 for v in everything[1::2])

    new_id()  # some read ahead, waiting in this process
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child's next ids: none may be one the parent will hand out
        os.write(write, ",".join(new_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as fh:
        from_child = set(fh.read().split(","))
    assert len(from_child) == 10 and not from_child & {new_id() for _ in range(10)}
