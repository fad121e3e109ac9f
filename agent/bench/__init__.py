"""Benchmarks: each is a command that prints its figures as JSON."""
