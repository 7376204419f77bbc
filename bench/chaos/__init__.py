"""Chaos: the whole platform on a simulated fleet, faults one after the other, and the books.

The platform runs as in production, every part its own process: a private Mosquitto, a
private PostgreSQL, ``smartcity ingest`` and ``smartcity rules run --event-time`` as
subprocesses, and a subset of a site (``sites/sefrou.yaml`` by default) as real edge agents
driven by the simulated city (:mod:`simulators.runner`), accelerated. Ingest reaches the broker
and the database through :class:`bench.fault_proxy.FaultProxy` forwarders. Faults are then
injected one after the other, each preceded by steady traffic:

- ``broker-kill``: Mosquitto SIGKILLed, restarted on its persistence file;
- ``database-restart``: ``pg_ctl stop -m immediate`` (a crash), then start;
- ``ingest-kill``: the ingest process SIGKILLed, restarted;
- ``broker-kill-ingest-away``: ingest SIGKILLed, and while the broker queues for its session
  (in memory, saved to disk every 3 s) the broker is SIGKILLed too; both restarted;
- ``rules-kill``: a pole is knocked down, and while its alert's timer runs the rules engine is
  SIGKILLed, then restarted;
- ``agent-offline``: one streetlight's link is cut for an hour of device time (it keeps
  sampling into its spool), then comes back;
- ``broker-link-blackhole``: the link between ingest and the broker drops every byte, both
  ways, without closing; then it is reset (or, with ``blackhole_reset`` off, left until
  ingest notices by itself);
- ``database-link-blackhole``: from ingest's next ``COMMIT`` on, the database's replies
  vanish (the commit itself lands); then the link is reset (or left until ingest notices).

Commands are sent during every fault, the way the control services send them (recorded in
``commands``, published QoS 1, resent with the same id until answered), each one published
twice on purpose.

The books, afterwards: every sample an agent took (recorded as its driver was read) must be
stored exactly once with the values sent, none lost, none doubled; every alert raised once
(the injected incidents exactly one alert each, every alert's history a clean chain with no
transition repeated, no two alerts of a rule and device open at once); no command applied
twice by an agent (the agents' own counters against the distinct commands they answered
``applied``, and the stored acknowledgements).
"""

from bench.chaos.config import COOL_DOWN, DEFAULT_SITE, FAULTS, WARM_UP, ChaosConfig
from bench.chaos.report import ChaosReport, report
from bench.chaos.run import run, to_json

__all__ = [
    "COOL_DOWN",
    "DEFAULT_SITE",
    "FAULTS",
    "WARM_UP",
    "ChaosConfig",
    "ChaosReport",
    "report",
    "run",
    "to_json",
]
