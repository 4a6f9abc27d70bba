"""rlbench.grid.record: one cell's result, written by the grid and read by the report."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlbench.core.errors import ResultsError
from rlbench.gate.checks import Status
from rlbench.grid.record import (OLDEST_SCHEMA, SCHEMA, ArgmaxFlips, CellRecord, Durations, Energy, Episodes, Latency, Outcome,
                                 RunContext, parse_cell_id)
from rlbench.report.results import load_results
from tests.data.results_factory import make_results

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
small_int = st.integers(min_value=0, max_value=2**40)
names = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8)
number_maps = st.dictionaries(names, finite, max_size=4)
CELLS = ["SAC-HalfCheetah-v5-baseline", "PPO-Hopper-v5-l2-0.30", "TD3-Ant-v5-ptdq", "DDPG-Walker2d-v5-int8pc"]


@st.composite
def energies(draw):
    if draw(st.booleans()):
        return Energy(True, None, draw(finite), calls=draw(small_int), seconds=draw(finite),
                      meter=draw(st.none() | names))
    return Energy(False, draw(st.none() | names), None)


@st.composite
def records(draw):
    cell = draw(st.sampled_from(CELLS))
    n = draw(st.integers(0, 5))
    ratios = draw(st.none() | number_maps)
    return CellRecord(
        cell=parse_cell_id(cell),
        episodes=Episodes(tuple(draw(st.lists(small_int, min_size=n, max_size=n))),
                          tuple(draw(st.lists(finite, min_size=n, max_size=n))),
                          tuple(draw(st.lists(small_int, min_size=n, max_size=n))),
                          draw(st.none() | finite), draw(st.none() | st.tuples(finite, finite))),
        runtime=draw(st.none() | st.sampled_from(["torch", "onnxruntime"])),
        model_bytes=draw(st.dictionaries(names, small_int, max_size=3)), bytes_total=draw(st.none() | small_int),
        params=draw(st.none() | small_int), int8_weight_tensors=draw(st.none() | small_int),
        compression_factor=draw(st.none() | finite), policy_sha256=draw(st.none() | names),
        argmax_flip=draw(st.none() | st.builds(lambda s, k: ArgmaxFlips(s, min(k, s)), small_int, small_int)),
        summary={"method": parse_cell_id(cell).method, "channel_ratio": draw(st.none() | finite),
                 "settings": {"bits": draw(small_int)}},
        latency=Latency(stats={"median": draw(finite), "data": draw(st.lists(finite, max_size=3))},
                        latency_s=draw(number_maps), latency_cpu_s=draw(number_maps),
                        throughput_batch64_per_s=draw(number_maps), ratios=ratios,
                        ratio_ci={k: (v, v) for k, v in (ratios or {}).items()},
                        ratio_clock=draw(st.none() | st.just("thread CPU time")),
                        noisy=tuple(draw(st.lists(names, max_size=2))), confirmed=draw(st.booleans())),
        memory=draw(st.dictionaries(st.sampled_from(["rss_delta_bytes", "rss_delta_bytes_arena_off"]), small_int)),
        energy=draw(st.none() | energies()),
        durations=Durations(draw(st.none() | finite), draw(st.none() | finite), draw(st.none() | number_maps),
                            draw(st.none() | number_maps)),
        context=RunContext(draw(st.none() | names), {"cpu_model": draw(names)}, {"torch": "2.13.0"},
                           draw(st.none() | st.integers(1, 8))),
        outcome=draw(st.none() | st.builds(Outcome, st.sampled_from(list(Status)),
                                           st.lists(names, max_size=2).map(tuple))),
        name=draw(st.none() | names))


@settings(max_examples=200, deadline=None)
@given(records())
def test_a_record_survives_its_json_unchanged(rec):
    text = json.dumps(rec.to_json(), allow_nan=False)
    assert CellRecord.from_json(json.loads(text)) == rec


@settings(max_examples=50, deadline=None)
@given(records())
def test_the_figures_the_store_keeps_read_back_as_the_same_figures(rec):
    back = CellRecord.from_figures(rec.id, rec.figures_json(), rec.machine_json())
    assert back.figures_json() == rec.figures_json() and back.machine_json() == rec.machine_json()


def test_the_compressions_own_summary_is_kept_as_it_was_written_nulls_and_all():
    fig = {"method": "l1", "ratio": 0.3, "channel_ratio": None, "notes": ["x"], "returns": [1.0, 2.0], "seeds": [1, 2]}
    rec = CellRecord.from_figures("PPO-Hopper-v5-l1-0.30", fig)
    assert rec.figures_json() == fig and rec.channel_ratio is None and rec.returns == (1.0, 2.0)


def _extra(doc, i=0):
    return doc["benchmarks"][i]["extra_info"]


def test_a_schema_1_file_reads_as_the_same_records(tmp_path):
    """Schema 1 (no top-level ``schema``; ``rlbench.schema`` 1) has the record's layout."""
    doc = make_results(cells=["PPO-Hopper-v5-baseline", "PPO-Hopper-v5-ptdq"])
    assert "schema" not in _extra(doc) and _extra(doc)["rlbench"]["schema"] == 1
    (tmp_path / "old.json").write_text(json.dumps(doc))
    old = load_results(tmp_path / "old.json")
    assert [r.context.schema for r in old.records] == [OLDEST_SCHEMA] * 2
    for entry in doc["benchmarks"]:  # the same cells as this rlbench writes them
        rec = CellRecord.from_entry(entry, cell=entry["param"])
        entry["extra_info"] = rec.to_json(stats=False)
        entry["extra_info"].pop("name", None)
    (tmp_path / "new.json").write_text(json.dumps(doc))
    new = load_results(tmp_path / "new.json")
    assert [r.context.schema for r in new.records] == [SCHEMA] * 2
    for a, b in zip(old.records, new.records):
        assert a.figures_json() == b.figures_json() and a.machine_json() == b.machine_json() and a.stats == b.stats


def test_a_newer_schema_fails_naming_the_file_the_cell_and_what_to_do(tmp_path):
    doc = make_results(cells=["PPO-Hopper-v5-baseline"])
    _extra(doc)["schema"] = SCHEMA + 1
    (tmp_path / "future.json").write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match=rf"future\.json: cell PPO-Hopper-v5-baseline: schema is {SCHEMA + 1}, "
                                           r"newer than this rlbench reads .*upgrade rlbench"):
        load_results(tmp_path / "future.json")


@pytest.mark.parametrize("schema", [0, "2", 1.5, True])
def test_a_schema_that_is_no_version_this_rlbench_reads_fails(tmp_path, schema):
    doc = make_results(cells=["PPO-Hopper-v5-baseline"])
    _extra(doc)["schema"] = schema
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match=r"bad\.json: cell PPO-Hopper-v5-baseline: schema is"):
        load_results(tmp_path / "bad.json")


@pytest.mark.parametrize(("where", "value", "field"), [
    ("figures", {"returns": ["a"]}, "figures.returns"),
    ("figures", {"seeds": [1.5]}, "figures.seeds"),
    ("figures", {"return_ci": [1.0]}, "figures.return_ci"),
    ("figures", {"bytes_total": 1.5}, "figures.bytes_total"),
    ("figures", {"runtime": 3}, "figures.runtime"),
    ("figures", {"channel_ratio": "half"}, "figures.channel_ratio"),
    ("figures", {"argmax_flip": "0.1"}, "figures.argmax_flip"),
    ("figures", {"argmax_flip": {"states": 10, "flips": 11}}, "figures.argmax_flip"),
    ("machine_figures", {"ratios": {"variant/fp32": "fast"}}, "machine_figures.ratios.variant/fp32"),
    ("machine_figures", {"ratio_ci": {"variant/fp32": [1.0, 2.0, 3.0]}}, "machine_figures.ratio_ci.variant/fp32"),
    ("machine_figures", {"memory": {"rss_delta_bytes": "1 MiB"}}, "machine_figures.memory.rss_delta_bytes"),
    ("machine_figures", {"energy": {"available": True, "joules_per_1000": "x"}}, "machine_figures.energy.joules_per_1000"),
    ("machine_figures", {"noisy": "variant"}, "machine_figures.noisy"),
    ("machine_figures", [], "machine_figures"),
    ("outcome", {"outcome": "fine", "notes": []}, "outcome.outcome"),
    ("rlbench", {"threads": "one"}, "rlbench.threads"),
])
def test_bad_input_names_the_cell_and_the_field(where, value, field):
    data = {"schema": SCHEMA, "cell": "PPO-Hopper-v5-ptdq", where: value}
    with pytest.raises(ResultsError, match=rf"^out\.json: cell PPO-Hopper-v5-ptdq: {field} is "):
        CellRecord.from_json(data, "out.json")


def test_a_record_that_is_no_cell_says_so():
    with pytest.raises(ResultsError, match="'Hopper-ptdq' is not an rlbench cell id"):
        CellRecord.from_json({"cell": "Hopper-ptdq"})
    with pytest.raises(ResultsError, match="cell PPO-Hopper-v5-ptdq: record is list"):
        CellRecord.from_json([], cell="PPO-Hopper-v5-ptdq")
    with pytest.raises(ResultsError, match="cell is 'PPO-Hopper-v5-ptsq', expected the entry's cell id 'PPO-Hopper-v5-ptdq'"):
        CellRecord.from_json({"cell": "PPO-Hopper-v5-ptsq"}, cell="PPO-Hopper-v5-ptdq")


def test_an_energy_meter_that_recorded_no_figure_is_no_figure():
    e = Energy.from_json({"available": True, "reason": None, "joules_per_1000": None}, "PPO-Hopper-v5-ptdq")
    assert not e.available and e.joules_per_1000 is None and "recorded no figure" in e.reason


def test_the_record_is_immutable():
    rec = CellRecord.from_figures("PPO-Hopper-v5-ptdq", {"model_bytes": {"model.onnx": 3}}, {"ratios": {"variant/fp32": 1.0}})
    with pytest.raises(TypeError):
        rec.model_bytes["model.onnx"] = 4
    with pytest.raises(TypeError):
        rec.ratios["variant/fp32"] = 2.0
    assert math.isclose(rec.ratios["variant/fp32"], 1.0)
