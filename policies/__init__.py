"""Every decision maker of mfrm: value types, the policy protocol, learners and baselines.

Pure: no I/O, no clock, no cluster client (checked by import-linter and tests/test_layers.py).
"""
