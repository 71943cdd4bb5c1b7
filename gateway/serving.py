"""Serve an ASGI app with uvicorn: in the foreground, or on a background thread for the demo,
the benchmarks and end-to-end tests (real sockets on loopback)."""

from __future__ import annotations

import gc
import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

# How many more container objects may be allocated than freed before the collector looks
# at the youngest generation (CPython's default is 700). A request keeps a few hundred
# objects alive while it runs, freed by their reference counts when it ends, and sixteen
# requests in flight passed 700 about once every ten requests: each of those collections
# walked the live objects of every request in flight (0.15 ms) to find no garbage at all
# (issue 17: 20 us of CPU a request in the closed loop, 1.6 % of it). At 7,000 it runs
# about once every 700 requests (1.4 ms each, 3 us a request); a cycle of garbage waits
# that much longer to be freed.
YOUNG_GENERATION_THRESHOLD = 7_000


def prepare_heap_for_serving() -> int:
    """Set up the garbage collector for a process that serves until it exits, once it has
    imported and built its app; returns how many objects are frozen.

    Every object alive now is moved out of the collector's sight. Modules, classes,
    functions and the app itself live as long as the process, yet each full collection
    walked them all again: about 150,000 objects, whose walk paused the event loop for
    70-110 ms on the development machine, every request waiting meanwhile (issue 17: the
    p99 of one round in three at 50 requests/s). Collected first, so no garbage is frozen
    with them. Then the youngest generation is collected less often
    (YOUNG_GENERATION_THRESHOLD); the older generations keep their thresholds.

    Call it only in a process that serves until it exits: what is frozen is never
    collected, so a process that builds many apps (the tests) must not."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, older, oldest)
    return gc.get_freeze_count()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class BackgroundServer:
    """`with BackgroundServer(app) as server: server.url` serves until the block ends."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        # The socket is bound here (port 0: any free one) and handed to uvicorn, so no other
        # process (a parallel test worker, say) can take the port between choice and bind.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port or 0))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app, host=host, port=self.port, log_level="warning", lifespan="on", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._socket.close()
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()
