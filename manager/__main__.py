"""`python -m manager`: see manager.cli."""

import sys

from manager.cli import main

sys.exit(main())
