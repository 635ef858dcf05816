"""Whether a launcher on another host is alive, decided on the stale limit's boundary.

A launcher stamps its claims every 30 s (HEARTBEAT_SECONDS); one on another host is dead only once its
heartbeat is 120 s old (HEARTBEAT_STALE_S, four beats). The ages below are written out, not computed
from the constants: a limit moved by a second, or `<` turned into `<=`, fails them. The clock is given.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sweep.store import owners
from sweep.store.owners import Owner

NOW = 1_700_000_000.0
PEER = Owner("peer.example", 20, 2)  # another host: its heartbeat alone says


def test_a_launcher_stamps_every_30_s_and_is_stale_after_four_missed_beats() -> None:
    assert (owners.HEARTBEAT_SECONDS, owners.HEARTBEAT_STALE_S) == (30.0, 120.0)


@pytest.mark.parametrize(
    ("age_s", "is_alive"),
    [
        (0.0, True),
        (30.0, True),  # one beat late
        (60.0, True),  # one beat missed
        (90.0, True),  # two missed
        (119.0, True),  # three missed, its fourth a second away
        (119.9, True),
        (120.0, False),  # the limit: dead
        (120.1, False),
        (121.0, False),
    ],
)
def test_a_launcher_on_another_host_is_alive_until_its_heartbeat_is_120_s_old(
    age_s: float, is_alive: bool
) -> None:
    assert owners.alive(PEER, NOW - age_s, now=NOW) is is_alive


def test_a_launcher_on_another_host_that_never_stamped_is_dead() -> None:
    assert owners.alive(PEER, None, now=NOW) is False


@pytest.mark.parametrize(("age_s", "taken"), [(90.0, False), (119.9, False), (120.0, True), (120.1, True)])
def test_the_take_over_rule_reads_the_clock_now(
    monkeypatch: pytest.MonkeyPatch, age_s: float, taken: bool
) -> None:
    monkeypatch.setattr(owners, "time", SimpleNamespace(time=lambda: NOW))
    assert owners.may_take_over(str(PEER), NOW - age_s) is taken
    assert owners.may_take_over(None, NOW) is True  # no owner: free
