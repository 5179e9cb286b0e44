"""Objects that hold something until closed, usable as ``with`` blocks."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closes:
    """``with obj:`` calls ``obj.close()`` on the way out, whatever happened inside."""

    def close(self) -> None:
        """Let go of what the object holds. Safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
