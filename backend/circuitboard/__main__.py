import sys

from circuitboard.cli import main

sys.exit(main())
