"""`drivers._vendor.disconnect_quietly`: every link is dropped and closed, dead ones included."""
from __future__ import annotations

from drivers._vendor import disconnect_quietly


class _Link:
    def __init__(self, dead: bool = False):
        self.dead, self.closed = dead, 0

    def bye(self) -> None:
        self.closed += 1
        if self.dead:
            raise ConnectionError("socket already closed")


class _Adapter:
    def __init__(self):
        self.a, self.b = _Link(dead=True), _Link()


def test_closes_every_link_even_after_a_dead_one():
    ad = _Adapter()
    a, b = ad.a, ad.b
    disconnect_quietly(ad, ("a", "b"), "bye")
    assert (a.closed, b.closed) == (1, 1)
    assert ad.a is None and ad.b is None


def test_second_call_and_missing_attributes_are_harmless():
    ad = _Adapter()
    b = ad.b
    disconnect_quietly(ad, ("a", "b", "never_set"), "bye")
    disconnect_quietly(ad, ("a", "b"), "bye")
    assert b.closed == 1
    assert ad.never_set is None
