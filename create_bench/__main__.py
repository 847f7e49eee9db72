from create_bench.cli import main

raise SystemExit(main())
