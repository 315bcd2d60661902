"""`python -m webhook`: the same as `l2guard webhook`, without depending on the top-level CLI."""

import sys

from webhook.cli import main

sys.exit(main())
