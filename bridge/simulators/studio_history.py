"""Trait value history of the Studio simulator (sans-IO): the store and the request parser.

Serves ``QueryDeviceHistoryDataRequest`` in :mod:`bridge.simulators.studio`. The request and
response shapes are INFERRED (only the type name is known, protocols.md §1.5 and §5 item 4):

* request ``data`` = ``{"deviceId": str, "endpointId": int, "functionCode": str,
  "traitCode": str, "startTime": int ms, "endTime": int ms, "pageNum"?: int >= 1 (default 1),
  "pageSize"?: int in (0, 200] (default 100), "orderBy"?: "time asc" | "time desc" (default
  desc)}``; ``startTime`` <= ``endTime``, both bounds inclusive.
* response ``data`` = ``{"totalCount": N, "pageNum": p, "pageSize": s,
  "data": [{"value": <typed>, "time": ms}]}``.

Each trait keeps its most recent :data:`DEFAULT_CAPACITY` samples, ordered by time (samples with
equal times keep their recording order). A series is created lazily, seeded with the value the
trait had before its first recorded change, so a trait that never changed still has one sample.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "HistoryQuery",
    "HistoryStore",
    "TraitSeries",
    "history_response",
    "parse_history_query",
]

TraitKey = tuple[str, int, str, str]
"""``(deviceId, endpointId, functionCode, traitCode)`` (the same alias as in ``studio``)."""

DEFAULT_CAPACITY = 10_000
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 200
ORDER_ASC = "time asc"
ORDER_DESC = "time desc"


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """A validated ``QueryDeviceHistoryDataRequest`` ``data``."""

    device_id: str
    endpoint_id: int
    function_code: str
    trait_code: str
    start_time: int
    end_time: int
    page_num: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    descending: bool = True

    @property
    def key(self) -> TraitKey:
        """The trait address."""
        return (self.device_id, self.endpoint_id, self.function_code, self.trait_code)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _want_str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"data.{key} is required and must be a string")
    return value


def _want_int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if not _is_int(value):
        raise ValueError(f"data.{key} is required and must be an integer")
    assert isinstance(value, int)
    return value


def parse_history_query(data: Any) -> HistoryQuery:
    """Validate request ``data``; ValueError with a message naming the field."""
    if not isinstance(data, dict):
        raise ValueError("data must be an object")
    device_id = _want_str(data, "deviceId")
    endpoint_id = _want_int(data, "endpointId")
    function_code = _want_str(data, "functionCode")
    trait_code = _want_str(data, "traitCode")
    start = _want_int(data, "startTime")
    end = _want_int(data, "endTime")
    if start > end:
        raise ValueError("data.startTime must not be after data.endTime")
    page_num = data.get("pageNum")
    if page_num is None:
        page_num = 1
    elif not _is_int(page_num) or page_num < 1:
        raise ValueError("data.pageNum must be an integer >= 1")
    page_size = data.get("pageSize")
    if page_size is None:
        page_size = DEFAULT_PAGE_SIZE
    elif not _is_int(page_size) or not 0 < page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"data.pageSize must be an integer in (0, {MAX_PAGE_SIZE}]")
    order = data.get("orderBy")
    if order is not None and order not in (ORDER_ASC, ORDER_DESC):
        raise ValueError(f"data.orderBy must be '{ORDER_ASC}' or '{ORDER_DESC}'")
    return HistoryQuery(
        device_id,
        endpoint_id,
        function_code,
        trait_code,
        start,
        end,
        page_num,
        page_size,
        order != ORDER_ASC,
    )


class TraitSeries:
    """The samples of one trait, ascending by time, bounded to the newest ``capacity``.

    Storage is trimmed lazily (when it reaches twice the capacity) so that appending stays O(1)
    amortised; everything that reads only sees the newest ``capacity`` samples.
    """

    __slots__ = ("_capacity", "_times", "_values")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._times: list[int] = []
        self._values: list[Any] = []

    def add(self, time_ms: int, value: Any) -> None:
        """Record a sample; out-of-order times are inserted in place (after equal times)."""
        times = self._times
        if not times or time_ms >= times[-1]:
            times.append(time_ms)
            self._values.append(value)
        else:
            at = bisect.bisect_right(times, time_ms)
            times.insert(at, time_ms)
            self._values.insert(at, value)
        if len(times) >= 2 * self._capacity:
            cut = len(times) - self._capacity
            del times[:cut]
            del self._values[:cut]

    def _first(self) -> int:
        return max(0, len(self._times) - self._capacity)

    def __len__(self) -> int:
        return len(self._times) - self._first()

    def samples(self) -> list[tuple[int, Any]]:
        """Every retained sample as ``(time, value)``, oldest first."""
        first = self._first()
        return list(zip(self._times[first:], self._values[first:], strict=True))

    def between(self, start: int, end: int) -> tuple[int, int]:
        """Index range ``[lo, hi)`` of the retained samples with ``start <= time <= end``."""
        first = self._first()
        lo = bisect.bisect_left(self._times, start, first)
        hi = bisect.bisect_right(self._times, end, lo)
        return lo, hi

    def page(
        self, start: int, end: int, page_num: int, page_size: int, descending: bool
    ) -> tuple[int, list[tuple[int, Any]]]:
        """``(total in range, the requested page of (time, value))``."""
        lo, hi = self.between(start, end)
        total = hi - lo
        skip = (page_num - 1) * page_size
        if skip >= total:
            return total, []
        if descending:
            top = hi - skip
            bottom = max(lo, top - page_size)
            idx: range = range(top - 1, bottom - 1, -1)
        else:
            bottom = lo + skip
            idx = range(bottom, min(hi, bottom + page_size))
        times, values = self._times, self._values
        return total, [(times[i], values[i]) for i in idx]


class HistoryStore:
    """Every trait's :class:`TraitSeries`, keyed by trait address."""

    __slots__ = ("_capacity", "_series")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._series: dict[TraitKey, TraitSeries] = {}

    @property
    def capacity(self) -> int:
        """Samples kept per trait."""
        return self._capacity

    def get(self, key: TraitKey) -> TraitSeries | None:
        """The series of a trait, or None if it has none yet."""
        return self._series.get(key)

    def open(self, key: TraitKey, seed_time: int, seed_value: Any) -> TraitSeries:
        """The series of a trait, created with one seed sample if it has none yet."""
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = TraitSeries(self._capacity)
            series.add(seed_time, seed_value)
        return series

    def drop(self, key: TraitKey) -> None:
        """Forget a trait's history (no-op if it has none)."""
        self._series.pop(key, None)

    def __len__(self) -> int:
        return len(self._series)


def history_response(query: HistoryQuery, series: TraitSeries) -> dict[str, Any]:
    """The ``QueryDeviceHistoryDataResponse`` ``data`` of ``query`` against ``series``."""
    total, items = series.page(
        query.start_time, query.end_time, query.page_num, query.page_size, query.descending
    )
    return {
        "totalCount": total,
        "pageNum": query.page_num,
        "pageSize": query.page_size,
        "data": [{"value": value, "time": time_ms} for time_ms, value in items],
    }
