"""Errors raised by the simulators."""


class SimulatorError(ValueError):
    """A simulation that cannot be set up as asked (a site, a fault plan, a rating)."""
