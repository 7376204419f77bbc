"""Errors raised by the edge agent."""


class EdgeAgentError(RuntimeError):
    """Base of every error the edge agent raises."""


class DriverError(EdgeAgentError):
    """A driver could not read its device or apply an output (bus error, timeout, bad reply)."""


class AgentConfigError(EdgeAgentError):
    """An agent configuration file that cannot be read or is not valid."""
