"""``python -m forcefit``: the same as the ``forcefit`` command (see :mod:`forcefit.cli`)."""

from .cli import main

raise SystemExit(main())
