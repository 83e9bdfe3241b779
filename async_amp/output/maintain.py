"""``compact`` of an output, whatever its format: the format's own table maintenance
(``format.Maintained``), or one line saying that the output holds no table to compact."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import Config
from ..errors import ConfigError
from .format import Maintained
from .registry import format_for, format_names

if TYPE_CHECKING:
    from .delta.compact import CompactResult

__all__ = ["compact"]


def compact(config: Config, **request: Any) -> list[tuple[str, CompactResult]]:
    """Compact the output's table of each project (blocking) through its format; ``request``:
    the fields of ``delta.maintain.CompactRequest`` (``first``, ``last``, ``projects``,
    ``environ``, ``retention_hours``...). ``ConfigError`` when the format keeps no table."""
    fmt = format_for(config.output.data_format)
    if not isinstance(fmt, Maintained):
        tables = [n for n in format_names() if isinstance(format_for(n), Maintained)]
        projects = ", ".join(request["projects"])
        msg = (
            f"compact works on tables ({', '.join(tables)}), and the output of {projects} "
            f"holds {fmt.name}: there is no table to compact"
        )
        raise ConfigError(msg)
    from .delta.maintain import CompactRequest  # noqa: PLC0415 - deltalake only when compacting

    return fmt.compact(config, CompactRequest(**request))
