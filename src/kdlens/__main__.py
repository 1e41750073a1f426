from kdlens.cli import main

raise SystemExit(main())
