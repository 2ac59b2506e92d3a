from eval.bench.speed import main

raise SystemExit(main())
