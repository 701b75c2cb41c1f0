"""Benchmarks (``landcover bench ...``)."""
