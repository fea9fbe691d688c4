"""Benchmarks, the paper bench and diagnostics: nothing deployed imports this package."""
