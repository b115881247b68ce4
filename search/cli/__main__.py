"""`python -m search.cli`: the same as the `cxrtune` command."""
import sys

from search.cli import main

sys.exit(main())
