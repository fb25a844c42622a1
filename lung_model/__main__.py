from lung_model.cli import main

raise SystemExit(main())
