"""watchkeeper.testing: test doubles that speak real protocols.

:class:`FakeOllama` is an HTTP server that behaves like Ollama (see
:mod:`watchkeeper.testing.fake_ollama`), for tests and for trying watchkeeper without a
model. Names are loaded on first access, so importing this package costs nothing and
``python -m watchkeeper.testing.fake_ollama`` runs cleanly.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from watchkeeper.testing.fake_ollama import FakeOllama, RecordedRequest, Reply, scenario

__all__ = ["FakeOllama", "RecordedRequest", "Reply", "scenario"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("watchkeeper.testing.fake_ollama"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
