"""The one place untrusted text is made safe: :func:`clean` with a named profile.

Process names, command lines, service names, error messages, probe output and alert
summaries are chosen by whoever runs software on the host, so they may carry terminal
escapes, bidi overrides that make text read differently than it is stored, zero-width
characters that hide words from a human reviewer, lone surrogates that cannot be encoded,
or simply megabytes of text. Every profile applies the same rule to those characters:

* whitespace of any kind (tabs, line breaks, U+2028...) becomes a plain space;
* controls, format characters (bidi, zero-width, BOM, tags), private-use and unassigned
  code points and variation selectors never survive: the profile either drops them or
  turns a run of them into one space;
* lone surrogates become U+FFFD or are dropped, so the result always encodes as UTF-8;
* the input is bounded before any work, and the result cut to the profile's length.

The profiles differ only in presentation, chosen by where the text goes:

=================  ==================================================================
``LOG_LINE``       collector values and error messages in logs and samples
``SERVICE_DETAIL`` the one-line detail of a service status or a health probe
``LABEL``          a short name shown to people next to numbers (alerts, trends)
``PROMPT_DATA``    text that goes into (or comes back from) a language model
``NOTIFICATION``   notices that leave the host (pager, mail, chat)
``TERMINAL``       a piece of a CLI screen (kept unstripped, so pieces can be joined)
=================  ==================================================================

Cleaning is only half of the defence against prompt injection: the prompt builder also
keeps every label inside a JSON data block. A label such as ``ignore previous
instructions`` survives cleaning unchanged, on purpose: hiding it would hide evidence.

Use it wherever an untrusted string crosses into text someone (or something) reads::

    clean("evil\\u202etxt.exe\\n", LABEL)  # -> 'eviltxt.exe'
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

__all__ = [
    "LABEL",
    "LOG_LINE",
    "NOTIFICATION",
    "PROMPT_DATA",
    "SERVICE_DETAIL",
    "TERMINAL",
    "TextProfile",
    "clean",
]


@dataclass(frozen=True, slots=True)
class TextProfile:
    """How cleaned text is presented; the safety rule itself is the same for every profile.

    Use one of the named profiles below rather than building your own, so one change to
    where a kind of text goes is one change here.
    """

    name: str
    max_len: int
    """Default length of the result, ellipsis included."""
    ellipsis: str = "…"
    """Appended when the text was cut."""
    drop_unsafe: bool = False
    """Drop unsafe characters (``a\\x1bb`` -> ``ab``) instead of one space per run."""
    drop_surrogates: bool = False
    """Drop lone surrogates instead of replacing each with U+FFFD."""
    normalize: bool = False
    """NFKC-normalise first, so full-width and compatibility look-alikes read plainly."""
    collapse: bool = False
    """Collapse every run of whitespace into one space."""
    strip: bool = True
    """Strip leading and trailing whitespace (always, when collapsing)."""
    empty: str = ""
    """What a text with nothing printable left becomes."""


LOG_LINE = TextProfile("log_line", 256)
SERVICE_DETAIL = TextProfile("service_detail", 200, ellipsis="...", collapse=True)
LABEL = TextProfile(
    "label", 64, drop_unsafe=True, drop_surrogates=True, normalize=True, collapse=True, empty="?"
)
PROMPT_DATA = TextProfile(
    "prompt_data",
    300,
    drop_unsafe=True,
    drop_surrogates=True,
    normalize=True,
    collapse=True,
    empty="?",
)
NOTIFICATION = TextProfile("notification", 300)
TERMINAL = TextProfile("terminal", 4096, strip=False)

# Cc: controls (ESC, BEL, NUL...). Cf: format characters (bidi overrides and isolates,
# zero-width space/joiners, BOM, invisible tag characters). Co/Cn: private-use and
# unassigned code points, which render unpredictably. Zl/Zp are whitespace (see below).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Zl", "Zp"})
# Variation selectors are combining marks (Mn), not format characters, yet a run of
# them can smuggle hidden bytes after a visible character.
_VARIATION_SELECTORS = (range(0xFE00, 0xFE10), range(0xE0100, 0xE01F0))
_VARIATION = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")
# How much raw input is looked at per output character: NFKC may expand a character, so
# keep some slack, but never normalise a whole megabyte log line.
_INPUT_SLACK = 8

_KEEP, _SPACE, _UNSAFE, _SURROGATE = range(4)


@functools.lru_cache(maxsize=4096)
def _kind(char: str) -> int:
    if char == " ":
        return _KEEP
    if char.isspace():
        return _SPACE
    category = unicodedata.category(char)
    if category == "Cs":
        return _SURROGATE
    if category in _UNSAFE_CATEGORIES:
        return _UNSAFE
    code = ord(char)
    if any(code in block for block in _VARIATION_SELECTORS):
        return _UNSAFE
    return _KEEP


def _already_safe(text: str, profile: TextProfile) -> bool:
    """Whether ``text`` has nothing the rule would change (checked in C, not per character).

    ``isprintable`` is false for every control, format, surrogate, private-use, unassigned
    and non-space whitespace character; only variation selectors (and, for normalising
    profiles, any non-ASCII character) need the per-character pass besides."""
    if text.isascii():
        return text.isprintable()
    return not profile.normalize and text.isprintable() and _VARIATION.search(text) is None


def _scrub(text: str, profile: TextProfile) -> str:
    """Apply the safety rule character by character (only for text that needs it)."""
    if profile.normalize:
        text = unicodedata.normalize("NFKC", text)
    surrogate = "" if profile.drop_surrogates else "\N{REPLACEMENT CHARACTER}"
    out: list[str] = []
    in_gap = False  # the last character written is a space standing for a run
    for char in text:
        kind = _kind(char)
        if kind == _KEEP:
            out.append(char)
        elif kind == _SURROGATE:
            out.append(surrogate)
        elif kind == _UNSAFE and profile.drop_unsafe:
            continue
        elif not in_gap:
            out.append(" ")
            in_gap = True
            continue
        else:
            continue
        in_gap = False
    return "".join(out)


def clean(text: str | bytes | None, profile: TextProfile, max_len: int | None = None) -> str:
    """Return ``text`` as one safe line of at most ``max_len`` characters (the profile's
    length by default), cut with the profile's ellipsis when too long.

    Bytes are decoded as UTF-8 (invalid bytes become U+FFFD); ``None`` and text with
    nothing printable left become the profile's ``empty``::

        clean(proc.cmdline, LOG_LINE, 1024)
    """
    limit = profile.max_len if max_len is None else max_len
    if limit < 1:
        raise ValueError(f"max_len must be at least 1, got {limit}")
    if text is None:
        return profile.empty
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text[: limit * _INPUT_SLACK + 64]
    if not _already_safe(text, profile):
        text = _scrub(text, profile)
    if profile.collapse:
        text = " ".join(text.split())
    elif profile.strip:
        text = text.strip()
    if len(text) > limit:
        text = text[: max(limit - len(profile.ellipsis), 0)].rstrip() + profile.ellipsis
    return text or profile.empty
