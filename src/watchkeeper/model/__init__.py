"""Shared types of watchkeeper: the vocabulary every other package speaks.

Everything above imports from here; this package imports nothing else of watchkeeper,
so a type defined here can be used anywhere without creating a cycle. Submodules by
concern: :mod:`.text` (cleaning untrusted text), :mod:`.secret` (secret settings),
:mod:`.datacheck` (bounded JSON).

    from watchkeeper.model import LABEL, clean
"""

from __future__ import annotations

from watchkeeper.model.text import (
    LABEL,
    LOG_LINE,
    NOTIFICATION,
    PROMPT_DATA,
    SERVICE_DETAIL,
    TextProfile,
    clean,
)

__all__ = [
    "LABEL",
    "LOG_LINE",
    "NOTIFICATION",
    "PROMPT_DATA",
    "SERVICE_DETAIL",
    "TextProfile",
    "clean",
]
