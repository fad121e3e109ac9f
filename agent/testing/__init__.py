"""deskpilot inside pytest: the plugin that collects task files and gives the desktop fixture."""
