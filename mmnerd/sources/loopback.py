"""Running a source's loopback HTTP server (images for the fetch stage) in a thread."""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def serve_in_background(server: socketserver.BaseServer, name: str) -> Iterator[None]:
    """Serve ``server`` from a daemon thread until the block exits, then shut it down and
    close its socket."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True, name=name
    )
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
