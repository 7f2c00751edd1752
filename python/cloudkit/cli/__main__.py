"""`python -m cloudkit.cli ...`: the same as the `cloudkit` command (what torchrun starts)."""

import sys

from cloudkit.cli import main

sys.exit(main())
