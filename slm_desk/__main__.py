from slm_desk.cli import main

raise SystemExit(main())
