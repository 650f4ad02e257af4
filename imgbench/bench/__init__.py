"""Benchmarks (not tests): each writes JSON to benchmarks/results/ and its section of docs/benchmarks.md."""
