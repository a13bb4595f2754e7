"""`python -m salus_engine.cli`: the `salus` command."""

import sys

from salus_engine.cli import main

sys.exit(main())
