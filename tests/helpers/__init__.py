"""Entry points that tests start as subprocesses (``python -m tests.helpers.NAME``)."""
