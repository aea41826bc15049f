"""The API token file: a first start on a full disk, and a token file left empty or full
of garbage, must never lock every later start out of all changes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from state_daemon import Daemon, Tmpfs, problem_lines

PATCH = {"changes": {"thresholds.cpu_warning": 71}}


def patch_with(daemon: Daemon, token: str) -> httpx.Response:
    return httpx.patch(
        daemon.url + "/api/config",
        json=PATCH,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def kept_token(data_dir: Path) -> str:
    path = data_dir / "api_token"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    token = path.read_text(encoding="ascii").strip()
    assert len(token) >= 32, f"not a usable token: {token!r}"
    return token


def test_a_first_start_on_a_full_disk_leaves_no_empty_token_and_the_next_start_works(
    tmp_path: Path,
) -> None:
    disk = tmp_path / "disk"
    with Tmpfs(disk, size="2m") as tmpfs:
        data = disk / "data"
        data.mkdir()
        tmpfs.fill()
        with Daemon(tmp_path, data) as daemon:
            assert daemon.health()["live"] is True
        token_file = data / "api_token"
        # Nothing, or a whole token: never the empty file that refused every change.
        if token_file.exists():
            assert token_file.stat().st_size > 0, "a 0-byte api_token was left behind"
        leftovers = [p.name for p in data.iterdir() if p.name.startswith(".api_token")]
        assert leftovers == [], leftovers
        assert problem_lines(daemon.stderr()) == []

        tmpfs.free()
        with Daemon(tmp_path, data) as again:
            token = kept_token(data)
            reply = patch_with(again, token)
            assert reply.status_code == 200, reply.text
            assert patch_with(again, "x" * 43).status_code == 401


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "was empty"),
        (b"\n\n  \n", "was empty"),
        (b"\x00\xff\xfe garbage \x01\x02", "did not hold a token"),
        (b"short", "did not hold a token"),
    ],
    ids=["empty", "blank-lines", "binary-garbage", "too-short"],
)
def test_an_empty_or_garbage_token_file_is_replaced_and_the_daemon_says_so(
    tmp_path: Path, content: bytes, said: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "api_token").write_bytes(content)
    with Daemon(tmp_path, data) as daemon:
        token = kept_token(data)
        assert token.encode() != content.strip()
        reply = patch_with(daemon, token)
        assert reply.status_code == 200, reply.text
    err = daemon.stderr()
    lines = [line for line in err.splitlines() if "api_token" in line and said in line]
    assert len(lines) == 1, err[-3000:]
    assert "made a new API token" in lines[0]
    assert problem_lines(err) == []


def test_a_good_token_file_is_kept_across_starts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Daemon(tmp_path, data):
        first = kept_token(data)
    with Daemon(tmp_path, data) as again:
        assert kept_token(data) == first
        assert patch_with(again, first).status_code == 200
    assert "made a new API token" not in again.stderr()
