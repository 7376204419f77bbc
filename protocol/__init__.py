"""The shared contract between devices and the platform: topics, payloads, metric catalogue.

Pure code: nothing here does I/O or reads the clock.
"""
