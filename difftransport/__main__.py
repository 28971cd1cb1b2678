"""``python -m difftransport ...`` is the ``difftransport`` command."""

from ._cli import main

raise SystemExit(main())
