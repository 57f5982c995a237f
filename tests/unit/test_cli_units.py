import uvloop

from gima_server.cli import _new_loop


def test_uvloop_is_used_when_present() -> None:
    loop = _new_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
