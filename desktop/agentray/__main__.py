import sys

from agentray.cli import main

sys.exit(main())
