from lung_model.cli.main import main

raise SystemExit(main())
