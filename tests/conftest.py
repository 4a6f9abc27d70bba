"""Unit-test fixtures: small fakes, temp dirs, never the shipped zoo unless a test says so."""

from __future__ import annotations

import pytest

from rlbench.core.threads import pin_threads

pin_threads(1)


@pytest.fixture
def tmp_baselines(tmp_path, monkeypatch):
    """An empty baselines/ tree, so tests never touch the repository's."""
    root = tmp_path / "baselines"
    (root / "policies").mkdir(parents=True)
    monkeypatch.setenv("RLBENCH_BASELINES", str(root))
    monkeypatch.setenv("RLBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RLBENCH_CACHE", str(tmp_path / "cache"))
    return root


def pytest_collection_modifyitems(config, items):
    """Everything under tests/ is a unit test (selectable with ``-m unit``)."""
    from pathlib import Path

    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.unit)
