"""A central analyzer's per-host states (``HostAnalyses``): created on a served host's
first sample, dropped with their baselines saved once the host is silent for long,
brought back with what they had learnt; hostile host ids never reach a path."""

from __future__ import annotations

from pathlib import Path

from watchkeeper.agents._hosts import HostAnalyses
from watchkeeper.config import Settings, deep_merge
from watchkeeper.model.fleet import HostBeat
from watchkeeper.testing.scenarios import Scenario, build_samples

QUIET = Scenario.model_validate({"name": "quiet", "steps": 30, "expect": {"verdict": "healthy"}})


def _settings(tmp_path: Path) -> Settings:
    base = Settings.model_validate({}).model_dump(mode="json")
    return Settings.model_validate(
        deep_merge(base, {"data_dir": str(tmp_path), "fleet": {"role": "central"}})
    )


def _beat(host: str, *agents: str) -> HostBeat:
    return HostBeat(host=host, agents=list(agents), sent_at=0.0, interval=10.0)


def test_a_silent_host_is_dropped_with_its_baselines_saved_and_comes_back_with_them(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    hosts = HostAnalyses(lambda: settings, own="central", data_dir=tmp_path, forget_after=60)
    hosts.learn(_beat("web-1", "sensor"), now=0.0)
    state = hosts.get("web-1", now=0.0)
    assert state is not None
    for _, sample in build_samples(QUIET):
        state.engine.observe(sample.model_copy(update={"host": "web-1"}), sample.timestamp)
    learnt = state.engine.baselines.to_state()
    assert hosts.forget_silent(now=30.0) == []  # not silent for long yet
    assert hosts.forget_silent(now=61.0) == ["web-1"]
    assert hosts.status()["hosts"] == 0
    saved = tmp_path / "fleet-baselines" / "web-1.json"
    assert saved.is_file()
    hosts.learn(_beat("web-1", "sensor"), now=100.0)
    back = hosts.get("web-1", now=100.0)
    assert back is not None and back is not state
    assert back.engine.baselines.to_state() == learnt


def test_hostile_or_self_analysing_hosts_get_no_state_and_no_file(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    hosts = HostAnalyses(lambda: settings, own="central", data_dir=tmp_path)
    hosts.learn(_beat("db-1", "sensor", "analyzer"), now=0.0)
    hosts.learn(_beat("central", "sensor"), now=0.0)  # its own host: analysed as before
    assert hosts.get("db-1", now=0.0) is None
    assert hosts.get("central", now=0.0) is None
    assert hosts.get("never-heard", now=0.0) is None
    # A beat with a host id no subject could carry (a bus that let it through) is no path.
    forged = HostBeat.model_construct(
        host="../../etc", agents=["sensor"], sent_at=0.0, interval=10.0
    )
    hosts.learn(forged, now=0.0)
    assert hosts.get("../../etc", now=0.0) is None
    hosts.save_all()
    assert not (tmp_path / "fleet-baselines").exists()
    assert not (tmp_path.parent / "etc.json").exists()
    assert hosts.status()["ignored_samples"] == 4
