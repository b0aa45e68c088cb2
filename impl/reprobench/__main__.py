import sys

from reprobench.cli import main

sys.exit(main())
