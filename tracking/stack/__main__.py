import sys

from tracking.stack.cli import main

sys.exit(main())
