"""The deskpilot command line: parsing, options, and one module per command."""
