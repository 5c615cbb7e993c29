"""`python -m node.cli …` is the `arena` command (workers, localnet and tests start it this way)."""
import sys

from node.cli import main

sys.exit(main())
