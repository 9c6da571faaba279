"""Something answering on a unix socket, in a thread: for tests of code that asks a runtime's socket."""
from __future__ import annotations

import contextlib
import socket
import threading
from typing import Callable, Iterator, Optional


@contextlib.contextmanager
def unix_server(path: str, answer: Optional[Callable[[socket.socket], None]] = None, backlog: int = 16) -> Iterator[str]:
    """Accept connections on ``path`` until the block ends; ``answer(conn)`` replies to each one (None: it
    is closed at once, a socket that merely answers). The thread is stopped and joined on exit."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(backlog)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _addr = srv.accept()
            except OSError:   # the accept timeout: look at stop again
                continue
            with conn:
                if answer is not None:
                    answer(conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield path
    finally:
        stop.set()
        t.join()
        srv.close()
