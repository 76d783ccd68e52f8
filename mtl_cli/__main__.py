from mtl_cli.main import main

raise SystemExit(main())
