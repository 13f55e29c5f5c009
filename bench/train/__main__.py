from bench.train.run import main

raise SystemExit(main())
