from mtl_cli.entry import main

raise SystemExit(main())
