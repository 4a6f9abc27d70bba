import sys

from rlbench.cli.main import main

sys.exit(main())
