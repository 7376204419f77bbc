"""Errors raised by the protocol package."""


class ProtocolError(ValueError):
    """Base of every error raised for input that breaks the device contract."""


class TopicError(ProtocolError):
    """A topic or a topic part that does not follow the topic scheme."""
