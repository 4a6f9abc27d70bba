"""Root conftest: wires the rlbench plugin for bench/ and tests/ (the logic lives in rlbench/)."""

pytest_plugins = ["rlbench.pytest_plugin"]
