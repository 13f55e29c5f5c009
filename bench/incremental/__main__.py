from bench.incremental.run import main

raise SystemExit(main())
