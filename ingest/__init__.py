"""The MQTT-to-database ingest service: decode, batch, COPY, commit, then acknowledge."""
