from bench.speed import main

raise SystemExit(main())
