"""Errors and warnings that whyrst reports to users (never tracebacks)."""

from __future__ import annotations

from dataclasses import dataclass, field


class WhyrstError(Exception):
    """An error whyrst reports as one line and exit status 2."""

    exit_status = 2


class CaptureError(WhyrstError):
    """A capture that cannot be read at all: names the file and the byte offset of the damage."""

    def __init__(self, source: str, offset: int | None, message: str) -> None:
        self.source = source
        self.offset = offset
        self.message = message
        where = f"{source}" if offset is None else f"{source}: offset {offset}"
        super().__init__(f"{where}: {message}")


@dataclass
class Warnings:
    """Collects warnings while a capture is read and analysed; each is one line for the user."""

    messages: list[str] = field(default_factory=list)
    limit: int = 1000
    dropped: int = 0

    def warn(self, message: str) -> None:
        if len(self.messages) < self.limit:
            self.messages.append(message)
        else:
            self.dropped += 1

    def all(self) -> list[str]:
        if self.dropped:
            return [*self.messages, f"{self.dropped} more warnings not shown"]
        return list(self.messages)
