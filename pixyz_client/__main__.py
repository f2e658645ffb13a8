"""`python -m pixyz_client ...`: the user commands without the server's code."""

import sys

from pixyz_client.cli import main

sys.exit(main())
