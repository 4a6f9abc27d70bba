"""Errors that users see. Each message names the file or cell and says what to do."""

from __future__ import annotations


class RLBenchError(Exception):
    """Base class: an error the CLI prints as one line and exits 2 on, without a traceback."""


class UnknownNameError(RLBenchError, KeyError):
    """An unknown algorithm, environment or method. The message lists the valid names."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class PolicyError(RLBenchError):
    """A shipped policy is missing, corrupt, or does not match what was asked for."""


class BaselineError(RLBenchError):
    """A stored baseline file is missing a cell, corrupt, or would be overwritten."""


class MeasurementError(RLBenchError):
    """A measurement produced something that is not a number (NaN, inf)."""


class CompressionError(RLBenchError):
    """Bad compression parameters, or a compression that failed."""


class ResultsError(RLBenchError):
    """A results file that cannot be read: missing, not JSON, truncated, not rlbench's, or a bad cell."""
