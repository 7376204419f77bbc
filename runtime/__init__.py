"""Process plumbing every service shares: logging, the MQTT session with acknowledge-after-commit,
resource limits, and local Mosquitto and PostgreSQL for ``up``, tests and benchmarks."""
