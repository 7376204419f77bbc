"""Alerts and their one owner: the catalogue of built-in kinds, the lifecycle, the store that
writes alert rows (every write under the alert's row lock) and the notifications."""
