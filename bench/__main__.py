"""``python -m bench [--quick] [--only SECTION ...]``: run the benchmarks, write RESULTS.md and plots."""

from bench.run import main

raise SystemExit(main())
