"""`python -m predmesh.cli`."""

from predmesh.cli import main

raise SystemExit(main())
