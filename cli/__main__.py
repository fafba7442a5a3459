"""`python -m cli ARGS` runs the `reelflow` command."""

import sys

from cli.main import main

sys.exit(main())
