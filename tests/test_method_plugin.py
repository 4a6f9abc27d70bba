"""A compression method is one declaration: registering it from this file alone puts it in the
``rlbench compress`` flags and help, the cache key, and (with its grid variants) the matrix."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlbench.cli.compress import params_from_args
from rlbench.cli.main import build_parser
from rlbench.compress import (METHODS, GridVariants, MethodInfo, Param, build_artefact, compress, get_method, register,
                              unregister)
from rlbench.core.errors import CompressionError, UnknownNameError
from rlbench.grid.matrix import cells, inapplicable, is_smoke, method_names, parse_cell
from rlbench.zoo.onnx_graph import onnx_bytes
from rlbench.zoo.policy import DeployablePolicy, PolicySpec


def build_copy(module, onnx_model: bytes, params: dict, context: dict) -> dict[str, bytes]:
    """The fp32 graph as it is: the smallest method there is."""
    context["summary"].update(copied=True)
    return {"model.onnx": onnx_model}


COPY = MethodInfo(
    "fp32copy", "onnxruntime", build_copy, version="7",
    params=(Param("fraction", "float", 1.0, low=0.0, high=1.0, low_open=True, doc="a fraction that only keys"),
            Param("twice", "bool", False, doc="a switch that only keys")),
    not_for_discrete="a test method, kept out of discrete pairs",
    grid=GridVariants(order=55, param="fraction", values=(0.25, 0.5), smoke=(0.5,)),
    doc="the fp32 graph, copied (a test's method)")


@pytest.fixture
def copy_method():
    register(COPY)
    try:
        yield COPY
    finally:
        unregister(COPY.name)


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    return DeployablePolicy(PolicySpec(5, 2, (16, 16), "tanh", squash=True, normalize=False)).eval()


def test_a_registered_method_gets_its_flags_and_is_listed_in_the_help(copy_method, capsys):
    args = build_parser().parse_args(["compress", "SAC", "Hopper-v5", "fp32copy", "--fraction", "0.5", "--twice",
                                      "--out", "x"])
    assert params_from_args(args) == {"fraction": 0.5, "twice": True}
    assert params_from_args(build_parser().parse_args(["compress", "SAC", "Hopper-v5", "ptdq", "--out", "x"])) == {}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compress", "--help"])
    out = capsys.readouterr().out
    assert "fp32copy" in out and "--fraction FRACTION" in out and "fp32copy: a fraction that only keys" in out


def test_without_the_declaration_there_is_no_flag(capsys):
    assert "fp32copy" not in METHODS
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compress", "SAC", "Hopper-v5", "fp32copy", "--fraction", "0.5", "--out", "x"])
    assert "--fraction" in capsys.readouterr().err


def test_its_cache_key_is_made_of_its_declaration(copy_method, policy, tmp_path):
    art = compress(policy, "fp32copy", {"fraction": 0.5}, cache_root=tmp_path, env_id="Hopper-v5")
    assert art.data("model.onnx") == onnx_bytes(policy) and art.summary["copied"] is True
    material = json.loads((art.path / "artefact.json").read_text())["key_material"]
    assert (material["method"], material["method_version"], material["params"]) == \
        ("fp32copy", "7", {"fraction": 0.5, "twice": False})
    assert build_artefact(policy, "fp32copy", {"fraction": 0.5}).key == art.key
    assert build_artefact(policy, "fp32copy", {"fraction": 0.25}).key != art.key
    register(dataclasses.replace(COPY, version="8"), replace=True)
    assert build_artefact(policy, "fp32copy", {"fraction": 0.5}).key != art.key
    with pytest.raises(CompressionError, match="fraction must be a number in"):
        compress(policy, "fp32copy", {"fraction": 0.0}, cache_root=tmp_path)


def test_a_method_declared_not_for_discrete_policies_refuses_one_with_its_reason(copy_method):
    torch.manual_seed(0)
    dqn = DeployablePolicy(PolicySpec(4, 2, (8,), "relu", discrete=True)).eval()
    with pytest.raises(CompressionError, match="fp32copy does not apply to a discrete-action policy: a test method"):
        build_artefact(dqn, "fp32copy")
    assert build_artefact(dqn, "ptdq").data("model.onnx")


def test_its_grid_variants_are_cells_of_the_matrix(copy_method):
    ids = {c.id for c in cells()}
    assert {"SAC-Hopper-v5-fp32copy-0.25", "SAC-Hopper-v5-fp32copy-0.50"} <= ids
    assert not any(i.startswith("DQN-") and "fp32copy" in i for i in ids)
    assert "test method" in inapplicable("DQN", "CartPole-v1", "fp32copy")
    cell = parse_cell("PPO-Hopper-v5-fp32copy-0.50")
    assert cell.variant.params() == {"fraction": 0.5} and is_smoke(cell)
    assert not is_smoke(parse_cell("PPO-Hopper-v5-fp32copy-0.25"))
    names = method_names()
    assert names.index("fp32copy") == names.index("fp16") + 1  # order 55: between fp16 (50) and int4 (60)


def test_unregistered_it_leaves_the_matrix_and_the_names():
    assert not [c for c in cells() if c.variant.method == "fp32copy"]
    with pytest.raises(UnknownNameError):
        get_method("fp32copy")
    with pytest.raises(UnknownNameError):
        parse_cell("SAC-Hopper-v5-fp32copy-0.50")


@pytest.mark.parametrize("change, message", [
    (dict(name="fp32-copy"), "method name"),
    (dict(name="baseline"), "method name"),
    (dict(name="ptdq"), "already registered"),
    (dict(runtime="tensorrt"), "runtime must be"),
    (dict(grid=GridVariants(order=1, param="rank", values=(0.5,))), "sweeps 'rank'"),
    (dict(grid=GridVariants(order=1, param="fraction", values=(2.0,))), "fraction must be"),
    (dict(grid=GridVariants(order=1, param="fraction", values=(0.5,), smoke=(0.1,))), "smoke values"),
    (dict(calibration=True), "prepare function"),
])
def test_a_bad_declaration_is_refused_naming_what_is_wrong(change, message):
    with pytest.raises(CompressionError, match=message):
        register(dataclasses.replace(COPY, **change))
    assert "fp32copy" not in METHODS and "fp32-copy" not in METHODS


METHOD_FILE = """
from rlbench.compress.registry import GridVariants, MethodInfo, Param, register


def build_copy(module, onnx_model, params, context):
    return {"model.onnx": onnx_model}


register(MethodInfo("fp32copy", "onnxruntime", build_copy, doc="the fp32 graph, copied",
                    params=(Param("fraction", "float", 1.0, low=0.0, high=1.0, low_open=True),),
                    grid=GridVariants(order=55, param="fraction", values=(0.25, 0.5))))
"""


def test_a_new_file_in_the_methods_package_is_a_method_of_the_cli_and_the_grid(tmp_path):
    """Adding a method is adding its module: a copy of the package with one more file in
    ``rlbench/compress/methods/`` lists it in ``rlbench compress --help`` and puts its variants in the grid."""
    import rlbench

    package = Path(rlbench.__file__).parent
    shutil.copytree(package, tmp_path / "rlbench", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "rlbench" / "compress" / "methods" / "fp32copy.py").write_text(METHOD_FILE)
    code = ("import rlbench, rlbench.grid.matrix as m; from rlbench.compress.methods import METHODS, MODULES; "
            "print(rlbench.__file__); print(' '.join(MODULES)); print(' '.join(METHODS)); "
            "print(sorted(c.id for c in m.cells() if c.variant.method == 'fp32copy' and c.algo == 'SAC' "
            "and c.env_id == 'Hopper-v5'))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=tmp_path).stdout.splitlines()
    assert out[0] == str(tmp_path / "rlbench" / "__init__.py")
    assert "fp32copy" in out[1].split()
    listed = out[2].split()
    assert listed.index("fp32copy") == listed.index("fp16") + 1  # in the grid's order: 55, after fp16's 50
    assert out[3] == str(["SAC-Hopper-v5-fp32copy-0.25", "SAC-Hopper-v5-fp32copy-0.50"])
    helped = subprocess.run([sys.executable, "-m", "rlbench", "compress", "--help"], capture_output=True, text=True,
                            check=True, env=env, cwd=tmp_path).stdout
    assert "fp32copy" in helped and "--fraction FRACTION" in helped


def test_every_module_of_the_methods_package_registers_a_method():
    """Shared code lives beside the package: a module there that registers nothing is misplaced."""
    from rlbench.compress.methods import MODULES

    homes = {info.build.__module__ for info in METHODS.values()}
    assert MODULES and all(f"rlbench.compress.methods.{name}" in homes for name in MODULES), (MODULES, homes)


def test_listing_methods_loads_no_heavy_library():
    code = ("import sys; import rlbench.compress, rlbench.grid.matrix as m; from rlbench.cli.main import build_parser; "
            "build_parser(); m.cells(); "
            "print(sorted(n for n in ('torch', 'onnx', 'onnxruntime', 'torch_pruning', 'stable_baselines3', "
            "'numpy') if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_papers_columns_are_the_methods_that_declare_them():
    from rlbench.grid.record import PRUNE_METHODS, QUANT_METHODS

    assert QUANT_METHODS == ("ptdq", "ptsq", "qat") and PRUNE_METHODS == ("l1", "l2")
    with pytest.raises(CompressionError, match="paper must be"):
        register(dataclasses.replace(COPY, paper="table9"))
