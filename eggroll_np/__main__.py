"""`python -m eggroll_np`: the command line."""

from .cli import main

raise SystemExit(main())
