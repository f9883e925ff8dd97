"""``python -m cc_bosky`` is the ``bosky`` command."""

import sys

from .tools.cli import main

sys.exit(main())
