import sys

from attnmag.cli import main

sys.exit(main())
