"""The README's configuration reference names every key the settings know."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from watchkeeper.config import Settings

README = Path(__file__).resolve().parents[1] / "README.md"
_FREE_FORM = {"plugin_configs", "route", "scripts"}  # tables whose keys are the user's


def leaves(data: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for key, value in data.items():
        if isinstance(value, dict) and value and key not in _FREE_FORM:
            out |= leaves(value, f"{prefix}{key}.")
        else:
            out.add(prefix + key)
    return out


def reference_block() -> dict[str, Any]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Every key and its default", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    # Keys documented without a default are commented out: read them too.
    block = re.sub(r"(?m)^# (\w+ = )", r"\1", block)
    return tomllib.loads(block)


def test_every_setting_is_in_the_readme() -> None:
    documented = leaves(reference_block())
    known = leaves(Settings.model_validate({}).model_dump(mode="json")) - {"services"}

    def covered(key: str, among: set[str]) -> bool:
        # An optional table documented by example counts for its key.
        return key in among or any(other.startswith(key + ".") for other in among)

    assert sorted(k for k in known if not covered(k, documented)) == []
    assert (
        sorted(k for k in documented if not any(k == c or k.startswith(c + ".") for c in known))
        == []
    )


def test_documented_defaults_are_the_real_ones() -> None:
    documented = reference_block()
    real = Settings.model_validate({}).model_dump(mode="json")
    for section in ("thresholds", "analyzer", "ollama", "storage"):
        for key, value in documented[section].items():
            if real[section][key] is not None:
                assert real[section][key] == value, f"{section}.{key}"
    assert documented["agents"]["check_interval"] == real["agents"]["check_interval"]
    assert documented["remediation"]["mode"] == real["remediation"]["mode"]
