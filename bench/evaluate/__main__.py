from bench.evaluate.run import main

raise SystemExit(main())
