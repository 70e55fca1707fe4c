from github_app.cli import main

raise SystemExit(main())
