"""Helpers of bench/sip_bench.py: peers, load, measurement and report."""
