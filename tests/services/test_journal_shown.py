"""A failed service's journal lines where people read them: the CLI's incident detail and
the alert notification's body. The alert is made by the real analyzer engine from a
failed unit whose journal holds hostile lines; what is checked is the text a person sees.
"""

from __future__ import annotations

import io

from rich.console import Console

from watchkeeper.analysis.engine import AnalysisEngine
from watchkeeper.cli.incidents_view import incident_detail_view
from watchkeeper.config import Settings
from watchkeeper.model.alerts import Alert
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.model.services import ServiceState, ServiceStatus
from watchkeeper.notify.compose import alert_notice
from watchkeeper.web.responses import IncidentDetail

JOURNAL = [
    "loading /etc/web.conf",
    "\x1b[2J\x1b]0;pwned\x07fatal: bind: address already in use",
    "[red]markup[/red] \u202eevil",
]


def _engine_alerts() -> tuple[AnalysisEngine, list[Alert]]:
    settings = Settings.model_validate(
        {"services": [{"name": "web", "manager": "systemd", "critical": True}]}
    )
    engine = AnalysisEngine(lambda: settings)
    status = ServiceStatus(
        name="web",
        manager="systemd",
        state=ServiceState.FAILED,
        critical=True,
        detail="web.service: failed/failed, result exit-code",
        journal=JOURNAL,
    )
    engine.observe(MetricsSample(timestamp=1000.0, host="h", services=[status]), 1000.0)
    return engine, engine.firing()


def test_the_incident_detail_shows_the_journal_once_literally() -> None:
    engine, alerts = _engine_alerts()
    (incident,) = engine.incidents_open()
    detail = IncidentDetail(
        incident=incident, source="analyzer", members=alerts, remedies=[], actions=[]
    )
    out = io.StringIO()
    Console(file=out, width=160, force_terminal=True, color_system=None).print(
        incident_detail_view(detail, 1001.0)
    )
    text = out.getvalue()
    assert text.count("Last log lines of service:web") == 1
    assert "loading /etc/web.conf" in text
    assert "fatal: bind: address already in use" in text
    assert "[red]markup[/red]" in text  # shown as written, not as rich markup
    assert "\x1b]0;" not in text and "\u202e" not in text and "\x07" not in text


def test_the_alert_notification_carries_the_journal() -> None:
    _, alerts = _engine_alerts()
    (down,) = [a for a in alerts if a.rule == "service_down"]
    notice = alert_notice(down, "firing", host="h", now=1001.0)
    body = notice.body.splitlines()
    at = body.index("Last log lines:")
    assert body[at + 1] == "  loading /etc/web.conf"
    assert body[at + 2].endswith("fatal: bind: address already in use")
    assert "\x1b" not in notice.body and "\u202e" not in notice.body
    evidence = next(line for line in body if line.startswith("Evidence:"))
    assert "journal" not in evidence  # the lines are their own block, not a list dump
