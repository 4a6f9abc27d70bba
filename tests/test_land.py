"""``rlbench zoo land``: the generated blocks it rewrites, the artefacts it removes, the lines it lists."""

from __future__ import annotations

import pytest

from rlbench.cli.land import old_figures, quoting_lines, splice, stale_artefacts
from rlbench.core.errors import RLBenchError

TABLE = "| a | b |\n|---|---|\n| 1 | 2 |\n\nAt or above the paper: 1 of 2."


def test_splice_replaces_the_block_from_its_header_to_its_closing_sentence_and_nothing_else():
    text = f"# Zoo\n\nintro\n\n{TABLE}\n\nAt or above the sea: prose that stays.\n"
    new = "| a | b |\n|---|---|\n| 3 | 4 |\n| 5 | 6 |\n\nAt or above the paper: 2 of 2."
    out = splice(text, new, "docs/zoo.md")
    assert out == f"# Zoo\n\nintro\n\n{new}\n\nAt or above the sea: prose that stays.\n"
    assert splice(out, new, "docs/zoo.md") == out


def test_splice_names_the_file_when_the_block_is_not_there():
    with pytest.raises(RLBenchError, match=r"README.md: found no block opening with '\| a \| b \|'"):
        splice("# nothing generated here\n", TABLE, "README.md")


def test_the_shipped_readme_and_zoo_doc_hold_the_blocks_landing_rewrites():
    from rlbench.core.paths import REPO_ROOT, baselines_dir
    from rlbench.gate import idle
    from rlbench.report.zoo_table import zoo_markdown, zoo_matrix_markdown
    from rlbench.zoo.shipped import zoo_table

    rows, still = zoo_table(), idle.read(baselines_dir())
    for rel, table in (("README.md", zoo_matrix_markdown(rows, still)), ("docs/zoo.md", zoo_markdown(rows, still))):
        text = (REPO_ROOT / rel).read_text(encoding="utf-8")
        assert splice(text, table, rel) == text, f"{rel}: its zoo table is not what `rlbench zoo list` prints"


def test_stale_artefacts_are_the_pairs_other_folders(tmp_path):
    for name in ("A-Hop-v5-qat-new", "A-Hop-v5-qat-old", "A-Hop-v5-gmp-old", "B-Hop-v5-qat-x", "A-Hopper-v5-qat-y"):
        (tmp_path / name).mkdir()
    stale = stale_artefacts(tmp_path, "A-Hop-v5", {tmp_path / "A-Hop-v5-qat-new"})
    assert [p.name for p in stale] == ["A-Hop-v5-gmp-old", "A-Hop-v5-qat-old"]
    assert stale_artefacts(tmp_path / "none", "A-Hop-v5", set()) == []


def test_quoting_lines_name_the_pair_in_the_docs_but_not_the_generated_tables(tmp_path):
    (tmp_path / "docs").mkdir()
    saturated = "More than 50% of their action components at a bound: TD3-Hopper-v5."  # generated
    (tmp_path / "README.md").write_text(f"{saturated}\nTD3 Hopper returns 935 here.\n")
    (tmp_path / "docs" / "x.md").write_text("SAC Hopper 3444\nthe TD3-Hopper-v5 cells\n")
    lines = quoting_lines(tmp_path, "TD3", "Hopper-v5", generated={saturated})
    assert lines == ["README.md:2: TD3 Hopper returns 935 here.", "docs/x.md:2: the TD3-Hopper-v5 cells"]


def test_lines_quoting_the_old_policys_figures_are_listed_though_they_do_not_name_the_pair(tmp_path):
    import json
    import subprocess

    meta = tmp_path / "baselines" / "policies" / "SAC-Ant-v5" / "meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"files": {"policy.pt": "old"},
                                "evaluation": {"mean": 1323.4, "ci_low": 1131.2, "ci_high": 1510.0}}))
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("nothing\n")
    (tmp_path / "docs" / "zoo.md").write_text("* **SAC** at 200k: 1323 [1131, 1510], below the paper.\n"
                                               "71323 steps, 1323.5 s, 11,323 and 1.1323 are other numbers.\n"
                                               "a table row | 1,323 |\n")
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(tmp_path), *cmd], check=True)
    assert old_figures(tmp_path, "SAC-Ant-v5") == []  # the working tree holds the committed policy
    meta.write_text(json.dumps({"files": {"policy.pt": "new"}, "evaluation": {"mean": 3536.0, "ci_low": 3226.0,
                                                                              "ci_high": 3797.0}}))
    figures = old_figures(tmp_path, "SAC-Ant-v5")
    assert figures == ["1,131", "1,323", "1,510", "1131", "1323", "1510"]
    assert quoting_lines(tmp_path, "SAC", "Ant-v5", set(), figures) == [
        "docs/zoo.md:1: * **SAC** at 200k: 1323 [1131, 1510], below the paper.", "docs/zoo.md:3: a table row | 1,323 |"]
    assert old_figures(tmp_path / "docs", "SAC-Ant-v5") == []  # no such file there
