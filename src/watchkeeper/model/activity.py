"""The activity log's vocabulary: how serious one line of it is.

Shared by the words (``notify.activity`` composes the lines) and the log
(``storage`` keeps and searches them), which do not import each other::

    from watchkeeper.model.activity import ActivitySeverity
"""

from __future__ import annotations

from typing import Literal

__all__ = ["ActivitySeverity"]

#: ``debug`` < ``info`` < ``warning`` < ``critical``; searches take "at least this severe".
ActivitySeverity = Literal["debug", "info", "warning", "critical"]
