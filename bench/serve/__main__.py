from bench.serve.run import main

raise SystemExit(main())
