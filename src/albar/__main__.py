import sys

from albar.cli import main

sys.exit(main())
