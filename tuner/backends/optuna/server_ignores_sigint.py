"""Imported first by the workers' fork server (``backend.WORKER_IMPORTS``) and nowhere else: the server
ignores SIGINT from here on, so a terminal's Ctrl-C while it imports torch does not kill it with a
traceback (multiprocessing makes it ignore SIGINT only once it serves). The workers it forks set their
own handlers (``worker.install_interrupt_handlers``)."""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
