"""`python -m manager`: see manager.cli (`status` goes straight to manager.status_cli, the quick path)."""

import sys

if sys.argv[1:2] == ["status"]:
    from manager.status_cli import main as status_main

    sys.exit(status_main(sys.argv[2:]))

from manager.cli import main

sys.exit(main())
