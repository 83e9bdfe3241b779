"""A fixed number of workers over a list, and closing a stream of chunks early."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio

from ..errors import AsyncAmpError, first_user_error

_T = TypeVar("_T")
_R = TypeVar("_R")


# --- a fixed number of workers over a list ------------------------------------------------------


async def map_bounded(
    items: Sequence[_T], fn: Callable[[_T], Awaitable[_R | None]], limit: int
) -> dict[_T, _R]:
    """``fn`` over ``items`` by ``limit`` workers; results by item (``None`` results dropped).

    The first error cancels the rest; a ``UserError`` (refused credentials) or a
    ``StorageError`` comes out as itself, not wrapped in an exception group.
    """
    results: dict[_T, _R] = {}
    pending = iter(items)

    async def worker() -> None:
        for item in pending:  # shared: each item goes to exactly one worker
            result = await fn(item)
            if result is not None:
                results[item] = result

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(max(1, min(limit, len(items)))):
                tg.start_soon(worker)
    except BaseExceptionGroup as group:
        leaf: BaseException | None = first_user_error(group)
        if leaf is group:
            leaf = group.subgroup(lambda e: isinstance(e, AsyncAmpError))
            while isinstance(leaf, BaseExceptionGroup):
                leaf = leaf.exceptions[0]
        if leaf is None:
            raise
        raise leaf from None
    return results


@asynccontextmanager
async def closing(chunks: AsyncIterator[bytes]) -> AsyncIterator[AsyncIterator[bytes]]:
    """Close an async generator even when the loop over it stops early (aclose is optional)."""
    try:
        yield chunks
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
