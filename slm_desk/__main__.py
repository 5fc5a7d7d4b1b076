from slm_desk import interrupts

interrupts.install()  # first of all: a Ctrl-C during the imports below is remembered even if a finalizer eats it

from slm_desk.cli import main  # noqa: E402

raise SystemExit(main())
