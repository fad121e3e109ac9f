"""The terminal interface that supervises a run: live view, step log, controls."""
