"""``python -m deskpilot`` runs the deskpilot command line (child processes start it with -P)."""

import sys

from deskpilot.agent.cli.main import main

sys.exit(main())
