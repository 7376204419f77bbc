"""The database: schema migrations, the device registry, the telemetry writer, maintenance.

The schema works on TimescaleDB and on plain PostgreSQL >= 15. Which one is decided once, by
the first migration; it installs SQL functions (``ensure_telemetry_partitions``,
``smartcity_maintain``) with the same signatures on both, so no Python code cares which.
"""
