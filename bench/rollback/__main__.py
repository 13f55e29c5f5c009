from bench.rollback.run import main

raise SystemExit(main())
