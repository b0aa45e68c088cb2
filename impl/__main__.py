import sys

from impl.cli import main

sys.exit(main())
