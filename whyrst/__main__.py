from whyrst.cli import main

raise SystemExit(main())
