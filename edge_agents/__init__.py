"""The device-side agent: drivers, sampling, store-and-forward spool, MQTT session."""
