"""Configuration: every source, their order, and every way it can be wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from watchkeeper.bus import InMemoryBus
from watchkeeper.cli.app import app
from watchkeeper.config import ConfigError, load_settings
from watchkeeper.live_config import ConfigStore

runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("WATCHKEEPER_") or name == "OLLAMA_HOST":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- sources and precedence ---------------------------------------------------------------


def test_defaults_match_the_product_brief() -> None:
    settings, path = load_settings()
    assert path is None
    t = settings.thresholds
    assert (t.cpu_warning, t.cpu_critical) == (75, 90)
    assert (t.memory_warning, t.memory_critical) == (85, 95)
    assert (t.disk_warning, t.disk_critical) == (85, 95)
    assert settings.agents.check_interval == 5.0
    assert settings.remediation.max_concurrent_actions == 2
    assert settings.remediation.healing_cooldown == 60
    assert settings.remediation.mode == "auto"
    o = settings.ollama
    assert (o.url, o.model, o.timeout, o.retry_attempts, o.retry_delay) == (
        "http://localhost:11434",
        "mistral",
        120,  # issue 15: a CPU model needs more than the brief's 30 s (~15-20 s per reply)
        3,
        2,
    )
    assert (settings.web.host, settings.web.port) == ("127.0.0.1", 8000)
    assert settings.data_dir == Path("debug_output")
    assert settings.plugins.plugins_to_load == []
    assert settings.plugins.plugin_configs == {}


def test_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    write(tmp_path / "watchkeeper.toml", "[thresholds]\ncpu_warning = 70\n")
    settings, path = load_settings()
    assert path == Path("watchkeeper.toml")
    assert settings.thresholds.cpu_warning == 70
    assert settings.thresholds.cpu_critical == 90  # untouched keys keep defaults


def test_environment_beats_file_and_flags_beat_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(tmp_path / "a.toml", "[thresholds]\ncpu_warning = 70\n[web]\nport = 9000\n")
    monkeypatch.setenv("WATCHKEEPER_THRESHOLDS__CPU_WARNING", "60")
    settings, _ = load_settings(cfg)
    assert settings.thresholds.cpu_warning == 60
    assert settings.web.port == 9000
    settings, _ = load_settings(cfg, flags={"thresholds": {"cpu_warning": 50}})
    assert settings.thresholds.cpu_warning == 50
    assert settings.web.port == 9000


def test_config_path_from_environment_and_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = write(tmp_path / "a.toml", "personality = 'plain'\n")
    b = write(tmp_path / "b.toml", "personality = 'witty'\nlog_level = 'debug'\n")
    monkeypatch.setenv("WATCHKEEPER_CONFIG", str(a))
    settings, path = load_settings()
    assert path == a and settings.personality == "plain"
    settings, path = load_settings(b)
    assert path == b and settings.personality == "witty" and settings.log_level == "DEBUG"


def test_ollama_host_is_honoured_below_our_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "10.1.2.3:11434")
    settings, _ = load_settings()
    assert settings.ollama.url == "http://10.1.2.3:11434"
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0")
    assert load_settings()[0].ollama.url == "http://0.0.0.0:11434"
    monkeypatch.setenv("WATCHKEEPER_OLLAMA__URL", "http://127.0.0.1:9999")
    settings, _ = load_settings()
    assert settings.ollama.url == "http://127.0.0.1:9999"


def test_nested_agent_override_and_list_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_AGENTS__SENSOR__CHECK_INTERVAL", "1")
    monkeypatch.setenv("WATCHKEEPER_PLUGINS__PLUGINS_TO_LOAD", '["disk_extra"]')
    settings, _ = load_settings()
    assert settings.agents.interval_for("sensor") == 1.0
    assert settings.agents.interval_for("analyzer") == 5.0
    assert settings.plugins.plugins_to_load == ["disk_extra"]


# -- bad configuration ---------------------------------------------------------------------

BAD_FILES = [
    ("[thresholds]\ncpu_warnin = 70\n", "thresholds.cpu_warnin: unknown key"),
    (
        "[thresholds]\ncpu_warning = 'hot'\n",
        "thresholds.cpu_warning: Input should be a valid number",
    ),
    ("[thresholds]\ncpu_warning = 95\n", "cpu_warning (95) must be below cpu_critical (90)"),
    (
        "[agents]\ncheck_interval = 0\n",
        "agents.check_interval: Input should be greater than or equal to 0.1",
    ),
    ("[agents.sensor]\ncheck_interval = -1\n", "agents.sensor.check_interval"),
    ("[remediation]\nmode = 'yolo'\n", "remediation.mode"),
    ("[thresholds\ncpu_warning = 1\n", "not valid TOML"),
    ("bogus = 1\n", "bogus: unknown key"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_bad_files_name_the_key_and_the_file(tmp_path: Path, text: str, expected: str) -> None:
    cfg = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    message = str(info.value)
    assert expected in message
    assert str(cfg) in message


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_config_check_exits_2_with_one_line(tmp_path: Path, text: str, expected: str) -> None:
    cfg = write(tmp_path / "bad.toml", text)
    result = runner.invoke(app, ["config", "check", str(cfg)])
    assert result.exit_code == 2
    assert expected in result.stderr
    assert str(cfg) in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(binary)
    if os.geteuid() != 0:  # root can read anything
        unreadable = write(tmp_path / "secret.toml", "personality = 'plain'\n")
        unreadable.chmod(0)
        with pytest.raises(ConfigError, match="cannot be read"):
            load_settings(unreadable)
    directory = tmp_path / "dir.toml"
    directory.mkdir()
    with pytest.raises(ConfigError, match="not a file"):
        load_settings(directory)


def test_bad_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_THRESHOLDS__CPU_WARNNG", "1")
    with pytest.raises(ConfigError, match="WATCHKEEPER_THRESHOLDS__CPU_WARNNG"):
        load_settings()
    monkeypatch.delenv("WATCHKEEPER_THRESHOLDS__CPU_WARNNG")
    monkeypatch.setenv("WATCHKEEPER_WEB__PORT", "eighty")
    with pytest.raises(ConfigError, match=r"web\.port: .*\(in environment\)"):
        load_settings()


def test_bad_flag_is_named_as_a_flag() -> None:
    with pytest.raises(ConfigError, match=r"web\.port: .*\(in command-line flags\)"):
        load_settings(flags={"web": {"port": 70000}})


def test_run_with_bad_flags_exits_2_without_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--no-web", "--set", "agents.check_interval=0"])
    assert result.exit_code == 2
    assert "agents.check_interval" in result.stderr
    result = runner.invoke(app, ["run", "--set", "nonsense"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.stderr
    result = runner.invoke(app, ["run", "--port", "notaport"])
    assert result.exit_code == 2


def test_config_show_prints_effective_toml_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_WEB__PORT", "8123")
    monkeypatch.setenv("WATCHKEEPER_WEB__TOKEN", "a-very-secret-token-123")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0
    assert "port = 8123" in result.stdout
    assert "a-very-secret-token-123" not in result.stdout
    result = runner.invoke(app, ["config", "show", "--json"])
    assert '"port": 8123' in result.stdout


def test_real_process_reports_bad_config_cleanly(tmp_path: Path) -> None:
    cfg = write(tmp_path / "bad.toml", "[web]\nport = 'x'\n")
    proc = subprocess.run(
        [sys.executable, "-m", "watchkeeper", "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("watchkeeper: config error: web.port")
    assert str(cfg) in proc.stderr
    assert "Traceback" not in proc.stderr


# -- live changes ---------------------------------------------------------------------------


async def test_live_change_is_validated_published_and_applied(tmp_path: Path) -> None:
    settings, _ = load_settings()
    bus = InMemoryBus()
    store = ConfigStore(settings, None, bus)
    sub = bus.subscribe("config.changed", name="t")
    change = await store.update(
        {"thresholds.cpu_warning": 80, "agents.check_interval": 2}, actor="api"
    )
    assert store.current.thresholds.cpu_warning == 80
    assert store.current.agents.check_interval == 2
    assert change.previous == {"thresholds.cpu_warning": 75.0, "agents.check_interval": 5.0}
    message = await sub.get(timeout=1)
    assert message.payload["changes"]["thresholds.cpu_warning"] == 80
    assert message.payload["persisted"] is False
    assert not (tmp_path / "watchkeeper.toml").exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"thresholds.cpu_warning": 95}, "must be below"),
        ({"thresholds.cpu_warnin": 1}, "unknown key"),
        ({"agents.check_interval": 0}, "greater than or equal to 0.1"),
        ({"web.port": 9000}, "only at start-up"),
        ({"remediation.mode": "yolo"}, "remediation.mode"),
    ],
)
async def test_bad_live_change_changes_nothing(change: dict[str, object], expected: str) -> None:
    settings, _ = load_settings()
    store = ConfigStore(settings, None, InMemoryBus())
    with pytest.raises(ConfigError, match=expected):
        await store.update(change)
    assert store.current == settings


async def test_live_change_written_back_only_when_asked(tmp_path: Path) -> None:
    cfg = write(tmp_path / "w.toml", "# mine\n[web]\nport = 9001\n")
    settings, path = load_settings(cfg)
    store = ConfigStore(settings, path, InMemoryBus())
    await store.update({"remediation.mode": "dry_run"})
    assert "dry_run" not in cfg.read_text()
    await store.update({"thresholds": {"disk_warning": 70}}, persist=True)
    reloaded, _ = load_settings(cfg)
    assert reloaded.thresholds.disk_warning == 70
    assert reloaded.web.port == 9001
    # Only the persisted change was written; the earlier live-only change was not.
    assert reloaded.remediation.mode == "auto"
