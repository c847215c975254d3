"""The stores and the in-process CLI runner of test_state_cli, for every CLI test module."""

from test_state_cli import cli, pg, store

__all__ = ["cli", "pg", "store"]
