"""rlbench's latency samples in pytest-benchmark's terms, for ``--benchmark-json``."""

from __future__ import annotations

from pytest_benchmark.stats import Stats


def benchmark_stats(raw: dict) -> dict:
    """The samples of ``raw`` (``data``: seconds a call, ``iterations`` a sample) through
    pytest-benchmark's own ``Stats``, in its JSON schema."""
    st = Stats()
    for v in raw["data"]:
        st.update(v)
    d = st.as_dict()
    d["data"] = list(raw["data"])
    d["iterations"] = raw["iterations"]
    return d
