"""`python -m node.demo`: run the demo (node/demo/run.py) and exit with its status."""
import sys

from node.demo.run import main

sys.exit(main())
