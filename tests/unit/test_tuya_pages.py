"""Reading a paged Tuya device listing whichever way the cloud pages: ``last_id`` or
``page_no``, capped pages, ``has_more``, ``total`` (each cloud here is a script of answers)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bridge.backends.tuya.client import MAX_PAGES, PAGE_SIZE, read_pages

SIZE = str(PAGE_SIZE)


def devices(*numbers: int) -> list[dict[str, Any]]:
    return [{"id": f"d{n}", "name": f"Device {n}"} for n in numbers]


class Script:
    """A cloud answering with these answers in turn; it records the queries."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.queries: list[dict[str, str]] = []

    async def __call__(self, query: dict[str, str]) -> Any:
        self.queries.append(dict(query))
        return self.answers[len(self.queries) - 1]


async def ids(script: Script, backend: str = "tuya") -> list[str]:
    return [str(d["id"]) for d in await read_pages(script, backend)]


def warnings(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.msg for r in caplog.records
            if r.levelno == logging.WARNING and isinstance(r.msg, dict)]


async def test_a_cloud_that_follows_last_id() -> None:
    cloud = Script(devices(1, 2), devices(3, 4), devices(5))  # capped at 2: page 3 is short
    assert await ids(cloud) == ["d1", "d2", "d3", "d4", "d5"]
    assert cloud.queries == [{"page_size": SIZE}, {"page_size": SIZE, "last_id": "d2"},
                             {"page_size": SIZE, "last_id": "d4"}]


async def test_a_cloud_that_pages_by_number() -> None:
    """It ignores ``last_id`` and answers the first page again: ``page_no`` takes over."""
    cloud = Script(devices(1, 2), devices(1, 2), devices(3, 4), devices(5))
    assert await ids(cloud) == ["d1", "d2", "d3", "d4", "d5"]
    assert cloud.queries == [{"page_size": SIZE}, {"page_size": SIZE, "last_id": "d2"},
                             {"page_size": SIZE, "page_no": "2"},
                             {"page_size": SIZE, "page_no": "3"}]


async def test_the_answers_last_id_and_has_more_are_followed() -> None:
    cloud = Script({"devices": devices(1, 2), "last_id": "k2", "has_more": True},
                   {"devices": devices(3), "last_id": "k3", "has_more": True},  # short, more
                   {"list": devices(4), "has_more": False})
    assert await ids(cloud) == ["d1", "d2", "d3", "d4"]
    assert [q.get("last_id") for q in cloud.queries] == [None, "k2", "k3"]


async def test_the_listing_ends_on_an_empty_page_or_nothing_new() -> None:
    assert await ids(Script(devices(1, 2), [])) == ["d1", "d2"]
    ignoring = Script(devices(1, 2), devices(1, 2), devices(1, 2))  # ignores every parameter
    assert await ids(ignoring) == ["d1", "d2"]
    assert len(ignoring.queries) == 3
    assert await ids(Script({"devices": []})) == []


async def test_a_total_that_differs_from_the_count_read_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.tuya")
    answer = {"devices": devices(1, 2), "total": 2, "has_more": False}
    assert await ids(Script(answer), "pages-total") == ["d1", "d2"]
    assert warnings(caplog) == []
    answer["total"] = 148
    assert await ids(Script(answer), "pages-total") == ["d1", "d2"]
    (entry,) = warnings(caplog)
    assert (entry["backend"], entry["read"], entry["total"]) == ("pages-total", 2, 148)
    assert await ids(Script(answer), "pages-total") == ["d1", "d2"]  # the next poll's listing
    assert len(warnings(caplog)) == 1  # a lasting discrepancy is not logged on every poll


async def test_an_endless_listing_is_cut_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.tuya")

    class Endless(Script):
        async def __call__(self, query: dict[str, str]) -> Any:
            self.queries.append(dict(query))
            return devices(len(self.queries))

    cloud = Endless()
    assert len(await ids(cloud, "pages-endless")) == MAX_PAGES
    (entry,) = warnings(caplog)
    assert (entry["pages"], entry["devices"]) == (MAX_PAGES, MAX_PAGES)
