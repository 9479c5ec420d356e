"""PyInstaller's entry point: the same ``main`` as the ``agentray`` console script."""

import sys

from agentray.cli import main

if __name__ == "__main__":
    sys.exit(main())
