from odin_ood.cli import main

raise SystemExit(main())
