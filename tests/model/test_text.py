"""model.text: every profile applies the same rule to unsafe characters; profiles differ
only in how the result is presented."""

from __future__ import annotations

import unicodedata

import pytest

from watchkeeper.model.text import (
    LABEL,
    LOG_LINE,
    NOTIFICATION,
    PROMPT_DATA,
    SERVICE_DETAIL,
    TERMINAL,
    TextProfile,
    clean,
)

PROFILES = [LOG_LINE, SERVICE_DETAIL, LABEL, PROMPT_DATA, NOTIFICATION, TERMINAL]
UNSAFE = "\x1b\x07\x00\x7f\x9b\u200b\u200f\u202e\u2066\ufeff\ue000\U000e0041\ufe0f"


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_no_profile_lets_a_control_format_or_private_character_through(
    profile: TextProfile,
) -> None:
    out = clean(f"a{UNSAFE}b\nc\u2028d", profile, 200)
    bad = [ch for ch in out if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn")]
    assert bad == []
    assert "\n" not in out and "\u2028" not in out


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_every_result_encodes_and_stays_within_its_length(profile: TextProfile) -> None:
    out = clean("x\udcff" * 10_000, profile, 50)
    out.encode("utf-8")
    assert len(out) <= 50


def test_notifications_lose_bidi_overrides_like_every_other_profile() -> None:
    assert clean("invoice\u202efdp.exe", NOTIFICATION) == "invoice fdp.exe"


def test_labels_drop_hidden_characters_log_lines_mark_where_they_were() -> None:
    assert clean("ss\u200bhd", LABEL) == "sshd"
    assert clean("ss\u200bhd", LOG_LINE) == "ss hd"


def test_terminal_pieces_keep_their_edges_so_they_can_be_joined() -> None:
    assert clean(" (risk: safe)\x1b[2J", TERMINAL) == " (risk: safe) [2J"


def test_bytes_and_none_are_accepted() -> None:
    assert clean(b"nginx\xff", LOG_LINE) == "nginx\ufffd"
    assert clean(None, LABEL) == "?"
    assert clean(None, LOG_LINE) == ""


def test_a_length_below_one_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="max_len"):
        clean("x", LOG_LINE, 0)
