"""wirelet benchmarks (not tests): run a module, e.g. ``python -m bench.codec``."""
