from bench.platform.run import main

raise SystemExit(main())
