"""The benchmark grid: its cells as data, running one cell, sharding, the paper's findings, self-checks."""
