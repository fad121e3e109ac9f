"""The agent: its loop, step records, run directories and command line."""
