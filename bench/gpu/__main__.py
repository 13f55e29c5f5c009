from bench.gpu.run import main

raise SystemExit(main())
