"""The ``rlbench`` command line (:func:`rlbench.cli.main.main`)."""
