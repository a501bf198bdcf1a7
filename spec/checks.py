"""The registry kit for invariants that describe their violations, shared by the vmalloc
(spec/vm_state.py), process (spec/mm_state.py) and slab (spec/slab_state.py) specifications.

An invariant there is a named check over one state record that returns a description of every
violation it finds (empty when it holds), so a failing test, state machine or model-checker run
says what is wrong, not only that something is. Each subsystem keeps its own registry (its own
names, its own ``*_violations`` entry point); this module only holds the one way they register
and report, so they cannot drift apart. The page allocator's invariants (spec/invariants.py) are
logic-kit formulas evaluated concretely and symbolically, a different kind, and stay there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S")


@dataclass(frozen=True)
class CheckedInvariant(Generic[S]):
    """A named invariant over a state of type ``S``; ``check`` lists each violation."""

    name: str
    meaning: str
    kernel_ref: str
    check: Callable[[S], list[str]]


class CheckRegistry(dict[str, CheckedInvariant[S]]):
    """The invariants of one subsystem by name, in definition order (the order reports use)."""

    def register(self, name: str, meaning: str, kernel_ref: str
                 ) -> Callable[[Callable[[S], list[str]]], Callable[[S], list[str]]]:
        """Decorator: register the check ``fn`` under ``name`` (the function is unchanged)."""

        def deco(fn: Callable[[S], list[str]]) -> Callable[[S], list[str]]:
            self[name] = CheckedInvariant(name, meaning, kernel_ref, fn)
            return fn

        return deco

    def violations(self, st: S) -> list[str]:
        """Every violation of every registered invariant, prefixed with the invariant's name."""
        return [f"{inv.name}: {msg}" for inv in self.values() for msg in inv.check(st)]
