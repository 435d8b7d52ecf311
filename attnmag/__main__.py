import sys

from attnmag.cli import main

__all__: list[str] = []

sys.exit(main())
