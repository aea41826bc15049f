"""A tiny demo service for trying self-healing: an HTTP server that answers 200 to anything.

It imports only the standard library's socket layer, so it starts in a few tens of
milliseconds even with ``python -I -S``; the heal benchmark reports that start time beside
the time to heal. Run it by file path (it needs nothing from watchkeeper)::

    python -I -S demo_service.py --port 8081             # serve until killed
    python -I -S demo_service.py --port 8081 --crash-after 30
    python -I -S demo_service.py --fail-start            # exit 3 at once (a crash loop)

``watchkeeper simulate service-crash NAME`` kills a configured service with SIGKILL so you
can watch the team bring it back.
"""

import os
import selectors
import socket
import sys
import time

_BODY = b"watchkeeper demo service: ok\n"
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: "
    + str(len(_BODY)).encode()
    + b"\r\n\r\n"
    + _BODY
)


def _arg(name: str, default: str | None = None) -> str | None:
    argv = sys.argv[1:]
    if name in argv:
        index = argv.index(name)
        return argv[index + 1] if index + 1 < len(argv) else default
    return default


def main() -> int:
    if "--fail-start" in sys.argv:
        sys.stderr.write("demo service: failing at start on purpose\n")
        return 3
    port = int(_arg("--port", "8081") or "8081")
    host = _arg("--host", "127.0.0.1") or "127.0.0.1"
    crash_after = _arg("--crash-after")
    deadline = time.monotonic() + float(crash_after) if crash_after else None
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(64)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    sys.stderr.write(f"demo service pid {os.getpid()} on {host}:{port}\n")
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if deadline is not None and timeout == 0.0:
            sys.stderr.write("demo service: crashing on purpose\n")
            return 1
        for _key, _ in selector.select(timeout):
            try:
                conn, _addr = listener.accept()
            except BlockingIOError:
                continue
            try:
                conn.settimeout(1.0)
                conn.recv(4096)
                conn.sendall(_RESPONSE)
            except OSError:
                pass
            finally:
                conn.close()


if __name__ == "__main__":
    sys.exit(main())
