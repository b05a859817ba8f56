"""Entry point for `python -m hil.cluster`."""

from hil.cluster.cli import main

raise SystemExit(main())
