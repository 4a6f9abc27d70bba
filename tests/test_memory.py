"""Memory records: parameter bytes exactly, and a model delta that excludes library overhead."""

from __future__ import annotations

import json

import pytest
import torch

from rlbench.measure import memory
from rlbench.measure.memory import MemoryRecord, measure_memory, param_bytes_of
from rlbench.zoo.onnx_graph import save_onnx
from rlbench.zoo.policy import DeployablePolicy, PolicySpec, num_params, save_policy

MiB = 1 << 20


def _write(folder, name: str, spec: PolicySpec) -> tuple[DeployablePolicy, dict]:
    torch.manual_seed(0)
    policy = DeployablePolicy(spec)
    pt, ox = folder / f"{name}.pt", folder / f"{name}.onnx"
    save_policy(policy, pt)
    save_onnx(policy, ox)
    return policy, {"pt": pt, "onnx": ox}


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("memory")
    return {
        "tiny": _write(folder, "tiny", PolicySpec(11, 3, (8,))),
        # 11*2048 + 2048*2048 + 2048*3 weights: 16.1 MiB of float32
        "big": _write(folder, "big", PolicySpec(11, 3, (2048, 2048))),
    }


@pytest.mark.parametrize("normalize,squash", [(False, False), (True, True)])
def test_param_bytes_counts_every_stored_tensor_exactly(tmp_path, normalize, squash):
    spec = PolicySpec(11, 3, (64, 64), normalize=normalize, squash=squash)
    policy, files = _write(tmp_path, "p", spec)
    n, obs, act = num_params(policy), spec.obs_dim, spec.act_dim
    # .pt: the state dict = parameters + obs_mean, obs_std, act_low, act_high
    assert param_bytes_of(files["pt"]) == 4 * (n + 2 * obs + 2 * act)
    # .onnx: transposed weights and biases + act_high, act_low (the Min/Max clip);
    # normalisation adds obs_mean, obs_std and the two clip scalars, squashing act_half, act_mid
    expected = 4 * (n + 2 * act)
    if normalize:
        expected += 4 * (2 * obs + 2)
    if squash:
        expected += 4 * 2 * act
    assert param_bytes_of(files["onnx"]) == expected
    assert param_bytes_of(str(files["onnx"])) == expected  # str paths too


def test_onnx_delta_grows_with_the_model_and_excludes_the_runtime(artefacts):
    _, tiny = artefacts["tiny"]
    _, big = artefacts["big"]
    small = measure_memory(tiny["onnx"], "onnxruntime", arena=False, repeats=1, calls=20)
    large = measure_memory(big["onnx"], "onnxruntime", arena=False, repeats=1, calls=20)

    assert large.delta_bytes - small.delta_bytes > 8 * MiB
    # importing onnxruntime alone costs ~47 MiB; the tiny model's delta must not contain it
    assert small.delta_bytes < 20 * MiB
    # The stand-in run imports onnxruntime and nothing heavier (no torch), and its peak is the
    # child's own: getrusage's ru_maxrss would report this pytest process's peak (torch: >200 MiB).
    assert 20 * MiB < small.peak_rss_empty_bytes < 150 * MiB

    for rec, files in ((small, tiny), (large, big)):
        assert rec.runtime == "onnxruntime" and rec.arena is False and rec.unit == "bytes"
        assert rec.bytes_on_disk == files["onnx"].stat().st_size
        assert rec.param_bytes == param_bytes_of(files["onnx"])
        assert rec.delta_bytes == ((rec.peak_rss_model_bytes - rec.samples["rss_at_fork_model"][0])
                                   - (rec.peak_rss_empty_bytes - rec.samples["rss_at_fork_empty"][0]))  # one repeat
        assert {k: len(v) for k, v in rec.samples.items()} == {k: 1 for k in rec.samples}
        assert rec.settings["calls"] == 20 and rec.settings["threads"] == 1 and rec.settings["batch"] == 1
        assert rec.settings["peak_source"] == "VmHWM"
        assert rec.machine and rec.versions.get("onnxruntime")
    # the big model's weights are resident at the peak, at least once
    assert large.delta_bytes > large.param_bytes * 0.9

    d = json.loads(json.dumps(large.to_json(), allow_nan=False))
    assert d["kind"] == "memory" and d["schema"] == memory.SCHEMA and isinstance(d["samples"]["delta"], list)
    assert MemoryRecord.from_json(d) == large


def test_torch_empty_run_imports_torch_too(artefacts):
    _, tiny = artefacts["tiny"]
    rec = measure_memory(tiny["pt"], "torch", repeats=1, calls=5)
    assert rec.arena is None and rec.runtime == "torch"
    assert rec.peak_rss_empty_bytes > 100 * MiB  # torch is imported in the stand-in run...
    assert rec.delta_bytes < 20 * MiB  # ...so it is not part of the delta


def test_missing_artefact_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "policy.onnx"
    with pytest.raises(FileNotFoundError, match="nowhere/policy.onnx"):
        measure_memory(missing, "onnxruntime")
    with pytest.raises(FileNotFoundError, match="nowhere/policy.onnx"):
        param_bytes_of(missing)


def test_child_crash_raises_with_stderr_tail(artefacts, monkeypatch):
    _, tiny = artefacts["tiny"]
    monkeypatch.setattr(memory, "CHILD_CODE",
                        "import sys\nsys.stderr.write('noise\\n' * 2000 + 'child-went-boom')\nsys.exit(3)")
    with pytest.raises(RuntimeError, match=r"(?s)exited with 3.*child-went-boom"):
        measure_memory(tiny["onnx"], "onnxruntime", repeats=1, calls=1, fresh=True)


@pytest.mark.parametrize("runtime,suffix", [("onnxruntime", "onnx"), ("torch", "pt")])
def test_forked_children_measure_the_delta_of_fresh_ones(artefacts, runtime, suffix):
    """The fork server's children give the model's delta of fresh interpreters within the RSS
    tolerance (20% or 2 MiB; measured here: big model 26.6 vs 29.3 MiB in torch, SAC Hopper's
    actor 0.77 vs 0.78 MiB in torch and 0.78 vs 0.71 MiB in ONNX Runtime)."""
    _, big = artefacts["big"]
    fresh = measure_memory(big[suffix], runtime, repeats=1, calls=5, fresh=True)
    forked = measure_memory(big[suffix], runtime, repeats=1, calls=5, fresh=False)
    assert forked.settings["children"].startswith("forked") and fresh.settings["children"] == "fresh interpreter"
    assert abs(forked.delta_bytes - fresh.delta_bytes) < max(2 * MiB, 0.2 * fresh.delta_bytes)
    assert forked.delta_bytes > forked.param_bytes * 0.9
    server = memory._SERVERS[("onnxruntime" if runtime == "onnxruntime" else "torch", 1)]
    pid = server.proc.pid
    measure_memory(big[suffix], runtime, repeats=1, calls=1, fresh=False)
    assert server.proc.pid == pid and server.alive()  # one server per process and runtime family


def test_a_server_that_grows_between_the_forks_of_a_pair_does_not_move_the_delta(artefacts, monkeypatch):
    """The two children of a pair fork from one server at two instants. A server whose RSS grows
    in between (here by a planted 8 MiB before each fork) hands the later child a higher start,
    which its VmHWM includes once ``clear_refs`` resets it: model minus empty peaks would move by
    the planted 8 MiB. Each child's RSS at its fork is taken off its peak, so the delta stays."""
    _, tiny = artefacts["tiny"]
    grow = "_hold = []\n" + memory.SERVER_CODE.replace(
        "    pid = os.fork()\n", "    _hold.append(b'\\x01' * (8 << 20))\n    pid = os.fork()\n")
    assert grow.count("_hold.append") == 1
    plain = measure_memory(tiny["onnx"], "onnxruntime", arena=False, repeats=2, calls=5, fresh=False)
    monkeypatch.setattr(memory, "_SERVERS", {})
    monkeypatch.setattr(memory, "SERVER_CODE", grow)
    grown = measure_memory(tiny["onnx"], "onnxruntime", arena=False, repeats=1, calls=5, fresh=False)
    memory._SERVERS[("onnxruntime", 1)].close()

    s = grown.samples
    assert s["rss_at_fork_model"][0] - s["rss_at_fork_empty"][0] > 7 * MiB  # the plant: empty forks first
    assert grown.peak_rss_model_bytes - grown.peak_rss_empty_bytes > 7 * MiB  # what peaks alone would say
    assert abs(grown.delta_bytes - plain.delta_bytes) < 1 * MiB
    assert all(v == 0 for v in measure_memory(tiny["onnx"], "onnxruntime", arena=False, repeats=1, calls=5,
                                              fresh=True).samples["rss_at_fork_model"])


def test_a_failing_forked_child_raises_with_its_traceback_and_the_server_survives(artefacts, tmp_path):
    _, tiny = artefacts["tiny"]
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(tiny["onnx"].read_bytes())
    server = memory._server("onnxruntime", 1)
    out = server.run({"runtime": "onnxruntime", "path": str(tmp_path / "gone.onnx"), "threads": 1, "arena": True,
                      "calls": 1, "batch": 1}, timeout=60)
    assert out["ok"] is False and "gone.onnx" in out["error"]
    assert server.alive()
    with pytest.raises(RuntimeError, match=r"(?s)failed in the fork server.*gone\.onnx"):
        memory._run_child({"runtime": "onnxruntime", "path": str(tmp_path / "gone.onnx"), "threads": 1,
                           "arena": True, "calls": 1, "batch": 1}, label="model", timeout=60, fresh=False)


def test_bad_arguments_are_refused(artefacts):
    _, tiny = artefacts["tiny"]
    with pytest.raises(ValueError, match="runtime must be one of"):
        measure_memory(tiny["onnx"], "tensorrt")
    with pytest.raises(ValueError, match=r"needs an \.onnx"):
        measure_memory(tiny["pt"], "onnxruntime")
    with pytest.raises(ValueError, match="needs a policy.pt"):
        measure_memory(tiny["onnx"], "torch")
    with pytest.raises(ValueError, match="arena applies to onnxruntime only"):
        measure_memory(tiny["pt"], "numpy", arena=False)
    with pytest.raises(ValueError, match="repeats >= 1"):
        measure_memory(tiny["onnx"], "onnxruntime", repeats=0)
