from mt.cli import main

raise SystemExit(main())
