"""A real model behind the fake Ollama, as its own process on loopback.

The tests here that need the model are marked ``realmodel`` (and ``slow``). Without the
optional extra they skip and say how to install it; with ``WATCHKEEPER_REQUIRE_REALMODEL=1``
(set by ``make test-realmodel``, which installs the extra) a missing extra is an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from watchkeeper.testing._real_model import (
    RealModelUnavailable,
    default_model_path,
    load_llama_cpp,
)
from watchkeeper.testing.real_server import RealModelServer


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The GGUF file of the ``realmodel`` extra, or a skip with the install hint."""
    try:
        load_llama_cpp()
        return default_model_path()
    except RealModelUnavailable as exc:
        if os.environ.get("WATCHKEEPER_REQUIRE_REALMODEL") == "1":
            pytest.fail(f"the realmodel extra is required here: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def real_server(
    model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealModelServer]:
    """One real-model server for the session (each test's calls add to its stats)."""
    with RealModelServer(model_path, directory=tmp_path_factory.mktemp("real-model")) as server:
        yield server
