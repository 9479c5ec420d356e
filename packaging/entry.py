"""PyInstaller's entry point: the same ``main`` as the ``agentray`` console script.

In the frozen app ``sys.executable`` is this program, and commands built from it (the demo's
build runs ``<sys.executable> -m unittest ...``) would reach the CLI. So ``-m MODULE ARGS`` is
run like ``python -m``: the module as ``__main__`` with the current folder first on sys.path.
"""

import os
import runpy
import sys


def _run_module() -> None:
    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    sys.path.insert(0, os.getcwd())
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    if getattr(sys, "frozen", False) and len(sys.argv) > 2 and sys.argv[1] == "-m":
        _run_module()
        sys.exit(0)
    from agentray.cli import main

    sys.exit(main())
