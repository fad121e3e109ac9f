"""``python -m agent`` runs the deskpilot command line."""

import sys

from agent.cli import main

sys.exit(main())
