"""What the simulator's answer for a window holds: its ZIP members (with a content fault
applied when one is asked for), the body built from them in a worker thread, and a
size-bounded cache of clean bodies, so repeated windows cost nothing to build again.

``ExportSimulator`` (``server.py``) owns one ``WindowContent`` and serves its bodies over HTTP.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from async_amp.simulator.dataset import Dataset, hours_between, utc_hour
from async_amp.simulator.faults import _CONTENT_FAULTS, Fault, Injection
from async_amp.simulator.wire import (
    _GZIP_EMPTY,
    MemberStyle,
    _Body,
    _mid_member_offset,
    _target_hour,
    corrupt_gzip,
)
from async_amp.simulator.zipbuild import ZipMember, empty_zip, iter_zip

__all__ = ["WindowContent"]


class WindowContent:
    """The ZIP bodies of one dataset's windows (``dataset`` changes with :meth:`change_hour`)."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        member_style: Callable[[datetime], MemberStyle],
        zip64: bool,
        unsafe_name: str,
        cache_bytes: int,
    ) -> None:
        self.dataset = dataset
        self._member_style = member_style
        self._zip64 = zip64
        self._unsafe_name = unsafe_name
        self._cache_limit = cache_bytes
        self._cache: OrderedDict[tuple[datetime, datetime], _Body] = OrderedDict()
        self._cache_size = 0
        self._build_locks: dict[tuple[datetime, datetime], asyncio.Lock] = {}

    def change_hour(self, hour: datetime, events: int | None = None) -> None:
        """Late data: from now on ``hour`` holds ``events`` events (default: one more than it
        had), so its content differs from what earlier requests were sent."""
        hour = utc_hour(hour)
        count = self.dataset.hour_event_count(hour) + 1 if events is None else events
        self.dataset = replace(self.dataset, hour_sizes={**self.dataset.hour_sizes, hour: count})
        for key in [k for k in self._cache if k[0] <= hour <= k[1]]:
            self._cache_size -= self._cache.pop(key).size

    def members(
        self, start: datetime, end: datetime, injection: Injection | None = None
    ) -> list[ZipMember]:
        """The ZIP members of a window, with a content fault applied when given."""
        ds = self.dataset
        hours = [h for h in hours_between(start, end) if ds.pages(h)]
        target = _target_hour(hours, injection)
        fault = injection.fault if injection is not None else None
        members: list[ZipMember] = []
        for hour in hours:
            style = self._member_style(hour)
            pages = ds.pages(hour)
            if hour == target and fault is Fault.MISSING_PARTITION:
                pages = [p for p in pages if p != pages[len(pages) // 2]]
            hour_members = [
                ZipMember(
                    ds.member_name(hour, p), ds.gz(hour, p), style.method, style.data_descriptor
                )
                for p in pages
            ]
            if hour == target and hour_members:
                first = hour_members[0]
                if fault is Fault.CORRUPT_GZIP:
                    assert isinstance(first.data, bytes)
                    hour_members[0] = replace(first, data=corrupt_gzip(first.data))
                elif fault is Fault.DUPLICATE_MEMBER:
                    hour_members.append(first)
                elif fault is Fault.UNSAFE_NAME:
                    hour_members.append(replace(first, name=self._unsafe_name))
                elif fault is Fault.FOREIGN_MEMBER:
                    name, data = self._foreign(end)
                    hour_members.append(replace(first, name=name, data=data))
            members.extend(hour_members)
        return members

    def _foreign(self, end: datetime) -> tuple[str, bytes]:
        """A member for the hour after the window (its real data when it has any)."""
        ds = self.dataset
        other = end + timedelta(hours=1)
        pages = ds.pages(other)
        if pages:
            return ds.member_name(other, pages[0]), ds.gz(other, pages[0])
        return ds.member_name(other, ds.first_page), _GZIP_EMPTY

    def build(self, start: datetime, end: datetime, injection: Injection | None = None) -> _Body:
        """The response body for a window (blocking: call it from a worker thread)."""
        fault = injection.fault if injection is not None else None
        if fault is Fault.EMPTY_ZIP:
            data = empty_zip()
            return _Body((data,), len(data))
        content = injection if fault in _CONTENT_FAULTS else None
        members = self.members(start, end, content)
        chunks = tuple(c for c in iter_zip(members, zip64=self._zip64) if c)
        size = sum(len(c) for c in chunks)
        if fault is Fault.ZIP_TRUNCATED and members:
            # Cut in the middle of the target hour's last member, then end cleanly.
            ds = self.dataset
            hours = [h for h in hours_between(start, end) if ds.pages(h)]
            target = _target_hour(hours, injection)
            assert target is not None
            last = ds.member_name(target, ds.pages(target)[-1])
            data = b"".join(chunks)
            cut = _mid_member_offset(data, last)
            return _Body((data[:cut],), cut)
        return _Body(chunks, size)

    async def body(self, start: datetime, end: datetime, injection: Injection | None) -> _Body:
        """The body for a request: built in a worker thread, clean ones cached."""
        if injection is not None and injection.fault in (*_CONTENT_FAULTS, Fault.EMPTY_ZIP):
            return await asyncio.to_thread(self.build, start, end, injection)
        key = (start, end)
        lock = self._build_locks.setdefault(key, asyncio.Lock())
        async with lock:
            body = self._cache.get(key)
            if body is not None:
                self._cache.move_to_end(key)
                return body
            body = await asyncio.to_thread(self.build, start, end, None)
            if body.size <= self._cache_limit:
                self._cache[key] = body
                self._cache_size += body.size
                while self._cache_size > self._cache_limit:
                    _, old = self._cache.popitem(last=False)
                    self._cache_size -= old.size
        return body
