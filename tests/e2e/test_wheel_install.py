"""watchkeeper as people install it: a built wheel in a fresh venv, and ``pipx install .``.

The wheel is built from a copy of the checkout (so no build/ or egg-info lands in it) with
``pip wheel --no-deps``, installed into a new ``python -m venv`` with the project's
constraints, and used only through its own ``watchkeeper`` script, from a folder outside
the checkout: ``--version``, ``config check``, then ``watchkeeper run`` on a free port
serving the dashboard page, its static files and the API. A file left out of the wheel
(a template, a script) shows as a 404 or a start-up error here, not on a user's machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from watchkeeper import __version__

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]
CONSTRAINTS = PROJECT / "constraints.txt"
PIP_TIMEOUT = 900
# What the dashboard needs from the package besides code (web/static, web/templates).
PAGES = ("/", "/fleet", "/static/app.js", "/static/dom.js", "/static/style.css", "/docs")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without watchkeeper's variables or this venv on the PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHKEEPER_", "VIRTUAL"))}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def _run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env or _clean_env(), capture_output=True, text=True,
        timeout=PIP_TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{argv[:4]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _source_copy(into: Path) -> Path:
    src = into / "source"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(PROJECT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(PROJECT / "src", src / "src", ignore=ignore)
    return src


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    out = root / "dist"
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out)]
    _run([*pip, str(_source_copy(root))], cwd=root)
    return next(out.glob("watchkeeper-*.whl"))


def _serves(watchkeeper: Path, home: Path) -> dict[str, httpx.Response]:
    """Run it on a free port from ``home``; the answers to PAGES and the API."""
    port = _free_port()
    argv = [str(watchkeeper), "run", "--data-dir", str(home / "data"), "--port", str(port),
            "--interval", "0.5", "--set", "ollama.enabled=false"]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=home, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"watchkeeper run exited: {proc.communicate()[1][-3000:]}")
            try:
                if httpx.get(base + "/api/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the installed watchkeeper never became healthy"
            time.sleep(0.3)
        answers = {path: httpx.get(base + path, timeout=10) for path in PAGES}
        for path in ("/api/health", "/api/system", "/metrics"):
            answers[path] = httpx.get(base + path, timeout=10)
        return answers
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AssertionError("the installed watchkeeper did not stop on SIGTERM") from None
        assert "Traceback" not in err, err[-3000:]


def _check_installed(watchkeeper: Path, home: Path) -> None:
    env = _clean_env()
    assert _run([str(watchkeeper), "--version"], cwd=home, env=env).strip() == (
        f"watchkeeper {__version__}"
    )
    config = home / "watchkeeper.toml"
    config.write_text('personality = "plain"\n[thresholds]\ncpu_warning = 70.0\n')
    assert "is valid" in _run([str(watchkeeper), "config", "check", str(config)], cwd=home)
    answers = _serves(watchkeeper, home)
    bad = {path: r.status_code for path, r in answers.items() if r.status_code != 200}
    assert bad == {}
    assert "<script" in answers["/"].text and "/static/app.js" in answers["/"].text
    assert "function" in answers["/static/app.js"].text
    assert answers["/api/system"].json()["state"] == "running"
    assert "watchkeeper_cpu_percent" in answers["/metrics"].text


def test_the_wheel_holds_the_dashboards_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for part in ("static", "templates"):
        shipped = sorted((PROJECT / "src/watchkeeper/web" / part).iterdir())
        missing = [p.name for p in shipped if f"watchkeeper/web/{part}/{p.name}" not in names]
        assert missing == [], f"left out of the wheel: {part}/{missing}"
    assert "watchkeeper/py.typed" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]


def test_the_wheel_in_a_fresh_venv_runs_and_serves_the_dashboard(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-c", str(CONSTRAINTS)]
    _run([*pip, str(wheel)], cwd=tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    _check_installed(venv / "bin" / "watchkeeper", home)


@pytest.fixture(scope="module")
def pipx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pipx itself, in a venv of its own (from the package registry)."""
    root = tmp_path_factory.mktemp("pipx-tool")
    _run([sys.executable, "-m", "venv", str(root / "venv")], cwd=root)
    try:
        _run([str(root / "venv/bin/python"), "-m", "pip", "install", "--quiet", "pipx"], cwd=root)
    except AssertionError as exc:
        pytest.skip(f"pipx could not be installed here: {str(exc)[-300:]}")
    yield root / "venv/bin/pipx"


def test_pipx_install_of_the_checkout_gives_a_working_watchkeeper(
    pipx: Path, tmp_path: Path
) -> None:
    source = _source_copy(tmp_path)
    env = _clean_env(
        PIPX_HOME=str(tmp_path / "pipx-home"),
        PIPX_BIN_DIR=str(tmp_path / "bin"),
        PIPX_MAN_DIR=str(tmp_path / "man"),
        PIP_CONSTRAINT=str(CONSTRAINTS),
    )
    _run([str(pipx), "install", str(source)], cwd=tmp_path, env=env)
    home = tmp_path / "home"
    home.mkdir()
    _check_installed(tmp_path / "bin" / "watchkeeper", home)
