"""Shipped QAT/GMP artefacts: made once into baselines/artefacts, found by compress, guarded."""

from __future__ import annotations

import json

import pytest

from rlbench.compress import base
from rlbench.compress.base import compress, ship_artefact, ship_key
from rlbench.core.errors import CompressionError
from rlbench.zoo.shipped import load_shipped
from tests._fakes import ship_fake

PARAMS = {"steps": 40}


@pytest.fixture
def shipped(tmp_baselines):
    ship_fake(tmp_baselines, "SAC", "Hopper-v5")
    return load_shipped("SAC", "Hopper-v5")


def test_ship_then_compress_uses_the_shipped_entry_without_building(shipped, tmp_baselines, monkeypatch):
    entry, status = ship_artefact(shipped, "qat", PARAMS)
    assert status == "written" and entry.parent == tmp_baselines / "artefacts"
    assert entry.name.startswith("SAC-Hopper-v5-qat-")
    meta = json.loads((entry / "artefact.json").read_text())
    assert entry.name.endswith(ship_key(meta["key_material"])[:12])
    assert "torch" in meta["key_material"]["versions"]  # provenance kept, not part of the lookup
    monkeypatch.setattr(base, "_build", lambda *a, **k: pytest.fail("a shipped artefact was rebuilt"))
    art = compress(shipped, "qat", PARAMS)
    assert art.path == entry and art.summary["int8_weight_tensors"] >= 2
    # different parameters are a different artefact: not shipped, so it would be built
    with pytest.raises(BaseException, match="shipped artefact was rebuilt"):
        compress(shipped, "qat", {"steps": 41})


def test_shipping_twice_is_unchanged_and_different_bytes_need_overwrite(shipped, monkeypatch):
    entry, _ = ship_artefact(shipped, "qat", PARAMS)
    assert ship_artefact(shipped, "qat", PARAMS) == (entry, "unchanged")
    (entry / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(CompressionError, match=r"already holds a different qat artefact; pass --overwrite"):
        ship_artefact(shipped, "qat", PARAMS)
    with pytest.raises(CompressionError, match=rf"shipped artefact {entry} is corrupt.*rlbench ship-artefacts --overwrite"):
        compress(shipped, "qat", PARAMS)
    assert ship_artefact(shipped, "qat", PARAMS, overwrite=True) == (entry, "replaced")
    assert compress(shipped, "qat", PARAMS).sha256() == compress(shipped, "qat", PARAMS, use_shipped=False).sha256()
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_rebuild_bypasses_the_shipped_entry(shipped):
    entry, _ = ship_artefact(shipped, "qat", PARAMS)
    art = compress(shipped, "qat", PARAMS, use_shipped=False)
    assert art.path != entry and art.sha256() == compress(shipped, "qat", PARAMS).sha256()


def test_ship_cli_refuses_methods_that_are_not_shipped(tmp_baselines, capsys):
    from rlbench.cli.main import main

    assert main(["ship-artefacts", "--method", "ptdq"]) == 2
    assert "only qat, gmp artefacts are shipped" in capsys.readouterr().err
