"""`python -m nanobert ...` is the same as the `nanobert` command (and what `torchrun -m nanobert` runs)."""

from nanobert.cli import main

raise SystemExit(main())
