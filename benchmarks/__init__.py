"""Throughput benchmarks of both backends against the blog's recipe and the optimiser-only floor.

Run ``python benchmarks/run.py --help``. Not part of the installed package: it imports torch and
jax side by side, which the library itself never does.
"""
