"""Helpers of the operator benchmarks (operator_reaction.py, transfer_rate.py)."""
