"""``rlbench zoo land``: the generated blocks it rewrites, the artefacts it removes, the lines it lists."""

from __future__ import annotations

import pytest

from rlbench.cli.land import quoting_lines, splice, stale_artefacts
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
