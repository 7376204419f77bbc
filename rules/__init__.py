"""Rules: fault detection and control decisions over device readings, pure at the core."""
