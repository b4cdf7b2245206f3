"""`python -m sage_gr00t.cli.bench NAME ...` = `sage-bench NAME ...`."""

from sage_gr00t.cli.bench import main

raise SystemExit(main())
