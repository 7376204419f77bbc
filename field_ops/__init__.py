"""Field operations: what citizens report and the crews do about it.

``services`` is the Open311 GeoReport v2 list of what a citizen can report, and how a report
is matched to the site's devices and to the alerts on them (pure); ``reports`` stores the
reports, links each to an open alert or raises one for the crews (through ``alerts``, the
one writer of alert rows), and reads their status back.
"""
