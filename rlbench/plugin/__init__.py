"""The pytest plugin: options, session, fixtures, and the figures handed to pytest-benchmark."""
