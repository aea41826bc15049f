"""Hostile configuration input: one clear line and exit 2, or a 422; never a traceback,
never a number that is not finite, never an interval that spins a core.

Every source is tried the way an attacker (or a fat finger) would: a TOML file nested
10,000 levels deep, ``inf`` and ``nan`` in the file, in ``WATCHKEEPER_*`` variables and in
``--set``; ``Infinity``, ``NaN`` and ``1e999`` in the JSON of ``PATCH /api/config``,
deep JSON bodies, and intervals of ``1e-6`` and ``0.001``. Afterwards the running daemon
still answers, its ``/api/config`` is standard JSON and its config file is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from config_daemon import ConfigDaemon, clean_env, run_cli

DEEP = 10_000


def _one_clear_line(done: Any, *words: str) -> str:
    """The CLI refused with exit 2 and one line on stderr, without a traceback."""
    assert done.returncode == 2, (done.returncode, done.stdout[-500:], done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return str(lines[0])


def _write(tmp_path: Path, text: str) -> Path:
    data = tmp_path / "data"
    path = tmp_path / "watchkeeper.toml"
    # Top-level keys of ``text`` come first; the web server stays off if anything runs.
    path.write_text(f'data_dir = "{data}"\n{text}\n[web]\nenabled = false\n', encoding="utf-8")
    return path


NESTED_TOML = {
    "arrays": "[plugins.plugin_configs.x]\na = " + "[" * DEEP + "]" * DEEP + "\n",
    "inline tables": "[plugins.plugin_configs.x]\na = " + "{b = " * DEEP + "1" + "}" * DEEP + "\n",
}


@pytest.mark.parametrize("shape", sorted(NESTED_TOML))
@pytest.mark.parametrize("command", ["check", "run"])
def test_deeply_nested_toml_is_one_line_and_exit_2(
    tmp_path: Path, shape: str, command: str
) -> None:
    path = _write(tmp_path, NESTED_TOML[shape])
    args = ["config", "check", str(path)] if command == "check" else ["run", "--config", str(path)]
    done = run_cli(*args, cwd=tmp_path, timeout=60)
    _one_clear_line(done, str(path), "nested")


NON_FINITE_TOML = {
    "inf": ("[remediation]\nkill_grace = inf\n", "remediation.kill_grace"),
    "nan": ("[thresholds]\ncpu_warning = nan\n", "thresholds.cpu_warning"),
    "-inf": ("[analyzer]\nclear_margin = -inf\n", "analyzer.clear_margin"),
    "in a free-form table": ("[plugins.plugin_configs.x]\nlimit = inf\n", "plugin_configs"),
}


@pytest.mark.parametrize("case", sorted(NON_FINITE_TOML))
def test_non_finite_numbers_in_the_file_are_refused(tmp_path: Path, case: str) -> None:
    text, key = NON_FINITE_TOML[case]
    path = _write(tmp_path, text)
    _one_clear_line(run_cli("config", "check", str(path), cwd=tmp_path), key, "finite")


ENVIRONMENT = {
    "inf": ("WATCHKEEPER_REMEDIATION__KILL_GRACE", "inf", "remediation.kill_grace"),
    "nan": ("WATCHKEEPER_STATUS_INTERVAL", "nan", "status_interval"),
    "1e999 in JSON": (
        "WATCHKEEPER_PLUGINS__PLUGIN_CONFIGS",
        '{"x": {"limit": 1e999}}',
        "plugin_configs",
    ),
    "nested JSON": ("WATCHKEEPER_SERVICES", "[" * DEEP + "]" * DEEP, "WATCHKEEPER_SERVICES"),
}


@pytest.mark.parametrize("case", sorted(ENVIRONMENT))
def test_bad_environment_values_are_refused(tmp_path: Path, case: str) -> None:
    name, value, key = ENVIRONMENT[case]
    path = _write(tmp_path, "")
    env = clean_env(**{name: value})
    _one_clear_line(run_cli("config", "check", str(path), cwd=tmp_path, env=env), key)


SETS = {
    "Infinity": ("remediation.kill_grace=Infinity", "remediation.kill_grace"),
    "NaN": ("thresholds.cpu_warning=NaN", "thresholds.cpu_warning"),
    "1e999": ("remediation.kill_grace=1e999", "remediation.kill_grace"),
    "inf as text": ("remediation.kill_grace=inf", "remediation.kill_grace"),
    "nested JSON": ("plugins.plugin_configs=" + "[" * DEEP + "]" * DEEP, "nested"),
}


@pytest.mark.parametrize("case", sorted(SETS))
def test_bad_set_values_are_refused_before_anything_runs(tmp_path: Path, case: str) -> None:
    pair, key = SETS[case]
    path = _write(tmp_path, "")
    done = run_cli("run", "--no-web", "--config", str(path), "--set", pair, cwd=tmp_path)
    _one_clear_line(done, key)
    assert not (tmp_path / "data" / "system_status.json").exists()


FLOORS = {
    "1e-6 check interval": ("[agents]\ncheck_interval = 1e-6\n", "agents.check_interval", "0.1"),
    "0.001 check interval": ("[agents]\ncheck_interval = 0.001\n", "agents.check_interval", "0.1"),
    "agent's own interval": (
        "[agents.sensor]\ncheck_interval = 0.001\n",
        "agents.sensor.check_interval",
        "0.1",
    ),
    "status interval": ("status_interval = 1e-6\n", "status_interval", "0.1"),
    "probe interval": ("[ollama]\nprobe_interval = 0.001\n", "ollama.probe_interval", "0.1"),
    "LLM timeout": ("[ollama]\ntimeout = 0.001\n", "ollama.timeout", "0.1"),
    "kill grace": ("[remediation]\nkill_grace = 1e-6\n", "remediation.kill_grace", "0.1"),
    "repeat interval": (
        "[notifications]\nrepeat_interval = 0.001\n",
        "notifications.repeat_interval",
        "1",
    ),
}


@pytest.mark.parametrize("case", sorted(FLOORS))
def test_intervals_and_timeouts_have_floors_named_in_the_error(tmp_path: Path, case: str) -> None:
    text, key, floor = FLOORS[case]
    path = _write(tmp_path, text)
    line = _one_clear_line(run_cli("config", "check", str(path), cwd=tmp_path), key)
    assert f"greater than or equal to {floor}" in line


# -- the running daemon -------------------------------------------------------------------
@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConfigDaemon]:
    with ConfigDaemon(tmp_path_factory.mktemp("input"), {}) as running:
        yield running


def _patch_raw(daemon: ConfigDaemon, body: str) -> httpx.Response:
    headers = {**daemon.auth(), "Content-Type": "application/json"}
    return httpx.patch(daemon.url + "/api/config", content=body, headers=headers, timeout=30)


PATCH_BODIES = {
    "Infinity": '{"changes": {"remediation.kill_grace": Infinity}, "persist": true}',
    "-Infinity": '{"changes": {"analyzer.clear_margin": -Infinity}, "persist": true}',
    "NaN": '{"changes": {"thresholds.cpu_warning": NaN}, "persist": true}',
    "1e999": '{"changes": {"remediation.kill_grace": 1e999}, "persist": true}',
    "inf as text": '{"changes": {"remediation.kill_grace": "inf"}, "persist": true}',
    "nested body": '{"changes": {"thresholds": ' + "[" * DEEP + "]" * DEEP + "}}",
    "nested below the recursion limit": '{"changes": {"notifications.route": '
    + '{"a": ' * 200
    + "1"
    + "}" * 200
    + "}, "
    + '"persist": true}',
}


@pytest.mark.parametrize("case", sorted(PATCH_BODIES))
def test_non_finite_and_nested_patch_bodies_are_a_clear_422(
    daemon: ConfigDaemon, case: str
) -> None:
    before = daemon.config.read_bytes()
    reply = _patch_raw(daemon, PATCH_BODIES[case])
    assert reply.status_code == 422, (reply.status_code, reply.text[:500])
    message = reply.json().get("message") or json.dumps(reply.json()["detail"])
    assert any(word in message for word in ("finite", "nested", "JSON allows", "out of range"))
    assert daemon.config.read_bytes() == before, "a refused change was written back"
    shown = httpx.get(daemon.url + "/api/config", timeout=10)
    assert shown.status_code == 200
    settings = json.loads(shown.text, parse_constant=_no_constant)["settings"]
    assert settings["remediation"]["kill_grace"] == 5.0


def _no_constant(name: str) -> Any:
    raise AssertionError(f"/api/config answered non-standard JSON: {name}")


@pytest.mark.parametrize("value", [1e-6, 0.001, 0.0])
@pytest.mark.parametrize("key", ["agents.check_interval", "status_interval"])
def test_patch_refuses_intervals_below_the_floor(
    daemon: ConfigDaemon, key: str, value: float
) -> None:
    reply = daemon.patch({key: value}, persist=True)
    assert reply.status_code == 422, reply.text
    assert key in reply.text and "0.1" in reply.text
    assert httpx.get(daemon.url + "/api/health", timeout=10).status_code == 200


def test_a_good_change_still_applies_after_the_attacks(daemon: ConfigDaemon) -> None:
    reply = daemon.patch({"agents.check_interval": 0.5})
    assert reply.status_code == 200, reply.text
    shown = httpx.get(daemon.url + "/api/config", timeout=10).json()["settings"]
    assert shown["agents"]["check_interval"] == 0.5
