from dotagent.cli import main

raise SystemExit(main())
