"""Benchmarks of the pool and the dashboard against their peers (``make bench``).

Benchmarks are not tests: they never run in ``make test``. Each figure is a
ratio against a peer measured in the same process, alternating them, with
medians over several rounds (see :mod:`bench.measure`).
"""
