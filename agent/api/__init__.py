"""deskpilot from Python: the Desktop API and its typed errors."""
