"""``python -m bench.tokenizer``: see :mod:`bench.tokenizer.run`."""

from bench.tokenizer.run import main

raise SystemExit(main())
