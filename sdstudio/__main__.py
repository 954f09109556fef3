"""`python -m sdstudio` (used by `accelerate launch -m sdstudio train ...`)."""

from sdstudio.cli import main

raise SystemExit(main())
