"""Every exit code slm-desk returns, in one place; `slm-desk run --help` and the README say the same.

When several apply to one `run`: USAGE, then UNANSWERED, INVALID, NOT_ACCEPTED."""

OK = 0
FAILED = 1  # an internal error, or a check that found something missing (`info`: no bundled model)
USAGE = 2  # the command line, an input or a file is wrong (the message names which and how to fix it)
INVALID = 3  # some answer is invalid after the retry
NOT_ACCEPTED = 4  # some answer needs escalation or review
UNANSWERED = 5  # some input could not be answered (a server failed it, the model computes garbage)
REGRESSED = 5  # `eval compare`: the second report is worse on some metric
INTERRUPTED = 130  # 128 + SIGINT (Ctrl-C)
BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader went away (`| head`)
TERMINATED = 143  # 128 + SIGTERM
