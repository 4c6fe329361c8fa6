"""The failures whose message is written for the person who ran the command.

A command's error describer (streams.cli.problems) prints these as one line. Any other
RuntimeError (a dictionary changed during iteration, a torch shape mismatch) is a bug and
keeps its traceback, so the two must not be told apart by their type's name alone.
"""

from __future__ import annotations


class OperationError(RuntimeError):
    """An operation could not finish for a reason outside the code (Kafka did not take
    the events, S3 would not delete objects); the message says what and where."""
