"""Health when sampling stalls: a monitor that no longer samples is blind, and its health
probe must say so (degraded, with the reason, and 503 for a probe that only reads the
status code) instead of a cheerful 200 "ok".

Sampling is made to stall the way a real host makes it stall: a collector that blocks
(think of a hung NFS mount under a disk collector), loaded through the plugin API like
any third-party collector. It blocks while a flag file exists.
"""

from __future__ import annotations

import time
from pathlib import Path

from state_daemon import Daemon, wait_until

STALL_PLUGIN = '''
"""A collector that blocks while a flag file exists (a test of health, not a real one)."""

import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from watchkeeper.model.metrics import MetricSpec
from watchkeeper.plugins import BasePlugin, PluginContext


class StallConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    flag: str


class StallCollector:
    name = "stall"
    metrics = (MetricSpec(name="stall.ok", unit="count", description="Always 1."),)

    def __init__(self, flag: Path) -> None:
        self.flag = flag

    def collect(self) -> dict[str, float]:
        while self.flag.exists():
            time.sleep(0.05)
        return {"stall.ok": 1.0}


class StallPlugin(BasePlugin[StallConfig]):
    config_model = StallConfig

    def register(self, system_context: PluginContext) -> None:
        system_context.collectors.register(StallCollector(Path(self.config.flag)))
'''


def test_stale_samples_make_health_degraded_and_not_ready_until_sampling_resumes(
    tmp_path: Path,
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "stall_plugin.py").write_text(STALL_PLUGIN)
    flag = tmp_path / "stall-now"
    settings = (
        f"plugins.directory={plugins}",
        'plugins.plugins_to_load=["stall_plugin"]',
        f'plugins.plugin_configs={{"stall_plugin": {{"flag": "{flag}"}}}}',
    )
    with Daemon(tmp_path, tmp_path / "data", *settings, interval=0.5) as daemon:
        # "starting: no sample yet" counts as fresh too, so wait for the whole system.
        wait_until("the daemon is up and sampling", lambda: daemon.health()["status"] == "ok")
        fresh = daemon.get("/api/health")
        assert fresh.status_code == 200 and fresh.json()["status"] == "ok", fresh.text

        flag.touch()  # the next sample hangs in the collector
        stalled_at = time.monotonic()
        wait_until(
            "health notices the stale samples",
            lambda: daemon.get("/api/health").status_code == 503,
            timeout=30,
        )
        noticed_after = time.monotonic() - stalled_at
        report = daemon.get("/api/health").json()
        assert report["status"] == "degraded" and report["ready"] is False, report
        sampling = report["checks"]["sampling"]
        assert sampling["ok"] is False and "samples stale" in sampling["detail"], sampling
        assert any(r.startswith("sampling: samples stale") for r in report["reasons"]), report
        # The daemon itself still answers: live stays 200 for a liveness probe.
        assert daemon.get("/api/health", params={"probe": "live"}).status_code == 200
        # 3 intervals (floored at 5 s), polled every 0.2 s: noticed well within 15 s.
        assert noticed_after < 15, noticed_after

        flag.unlink()
        last: dict[str, object] = {}

        def ok_again() -> bool:
            last.update(daemon.health())
            return last["status"] == "ok"

        try:
            wait_until("health is ok again", ok_again, timeout=30)
        except AssertionError:
            raise AssertionError(f"still not ok: {last}") from None
        assert daemon.get("/api/health").status_code == 200
