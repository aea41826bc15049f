"""What every attack test's daemon helper shares: a free loopback port and a stop that
asks first (SIGTERM) and insists after (SIGKILL).

The helpers (``config_daemon``, ``state_daemon``, ``web_attack_helpers``,
``action_attack_helpers``) differ in how they configure and read a daemon; starting and
stopping the process is the same for all of them::

    port = free_port()
    graceful = stop_process(proc, timeout=15)   # False: it had to be killed
"""

from __future__ import annotations

import signal
import socket
import subprocess
from typing import Any

__all__ = ["free_port", "stop_process"]


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any], timeout: float) -> bool:
    """SIGTERM, then SIGKILL if ``proc`` is still running after ``timeout`` seconds.

    Returns whether it stopped on SIGTERM (True also when it had already exited)."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        return False
    return True
