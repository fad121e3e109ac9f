"""YAML task files as scripted jobs and UI tests: loading, steps, the runner, the cache."""
