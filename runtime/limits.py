"""Resource limits of a process."""

from __future__ import annotations

import resource


def raise_open_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return the new soft limit.

    Debian's default soft limit (1,024) is below what a broker with the simulated city's
    2,000-odd clients, or the simulator holding their sockets and spools, needs.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
