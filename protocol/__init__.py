"""The shared contract between devices and the platform: topics, payloads, metric catalogue.

Pure code: nothing here does I/O or reads the clock.

Local time comes from one time zone database everywhere: the ``tzdata`` package installed with
the platform (the version pandas' time zones also follow), not the operating system's copy,
which may be older. Morocco's offsets change by decree (Ramadan, and the return to UTC+0 in
September 2026); agents, services and simulations must agree on them.
"""

import zoneinfo

zoneinfo.reset_tzpath(to=[])
zoneinfo.ZoneInfo.clear_cache()
