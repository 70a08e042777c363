from chair.cli import main

raise SystemExit(main())
