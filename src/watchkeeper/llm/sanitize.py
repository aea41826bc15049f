"""Make untrusted host strings safe to show to a model, a log or a terminal.

Process names, command lines, service names, paths and log lines are chosen by whoever
runs software on the host, so they may carry terminal escapes, bidi overrides that make
text read differently than it is stored, zero-width characters that hide words from a
human reviewer, or simply megabytes of text. :func:`sanitize_label` turns any of them into
a short, single-line, printable label.

Sanitising is only half of the defence against prompt injection: the prompt builder also
keeps every label inside a JSON data block and tells the model that the block is data.
A label such as ``ignore previous instructions`` survives sanitising unchanged, on
purpose: it is a legitimate (if odd) name, and hiding it would hide evidence.

Use it wherever an untrusted string crosses into text someone (or something) reads::

    sanitize_label("evil\\u202etxt.exe\\n")  # -> 'eviltxt.exe'
"""

from __future__ import annotations

import unicodedata

__all__ = ["ELLIPSIS", "sanitize_label"]

ELLIPSIS = "…"
"""Marks a label that was cut to fit."""

# Cc: controls (ESC, BEL, NUL...). Cf: format characters (bidi overrides and isolates,
# zero-width space/joiners, BOM, invisible tag characters). Cs: lone surrogates, which
# cannot even be encoded as UTF-8. Co/Cn: private-use and unassigned code points, which
# have no business in a name and render unpredictably.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})

# Variation selectors are combining marks (Mn), not format characters, yet a run of
# them can smuggle hidden bytes after a visible character.
_VARIATION_SELECTORS = (range(0xFE00, 0xFE10), range(0xE0100, 0xE01F0))

# How much raw input we bother to look at per output character: NFKC may expand a
# character, so keep some slack, but never normalise a whole megabyte log line.
_INPUT_SLACK = 8


def _is_dropped(char: str) -> bool:
    if unicodedata.category(char) in _DROPPED_CATEGORIES:
        return True
    code = ord(char)
    return any(code in block for block in _VARIATION_SELECTORS)


def sanitize_label(text: str | bytes | None, max_len: int = 64) -> str:
    """Return ``text`` as one printable line of at most ``max_len`` characters.

    Steps, in order: decode bytes (invalid UTF-8 becomes U+FFFD), NFKC-normalise (so
    full-width and compatibility look-alikes become their plain forms), turn line breaks
    and tabs into spaces, drop control/format/unassigned characters, collapse runs of
    whitespace, and cut with a trailing ``…`` when too long. The result is never empty:
    a label with nothing printable left becomes ``"?"``.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    if text is None:
        return "?"
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text[: max_len * _INPUT_SLACK + 64]
    text = unicodedata.normalize("NFKC", text)
    # Whitespace controls (\t \n \r \v \f) are Cc too; map them to spaces before the
    # filter so "a\nb" reads "a b" rather than "ab".
    kept = "".join(
        " " if ch.isspace() else ch for ch in text if ch.isspace() or not _is_dropped(ch)
    )
    label = " ".join(kept.split())
    if len(label) > max_len:
        label = label[: max_len - 1].rstrip() + ELLIPSIS
    return label or "?"
