"""A tiny logic kit so one definition serves concrete ints/bools and Z3 terms.

Functions of the model that the proofs reason about are written with Python operators and the
helpers below; given ints they compute ints, given Z3 bit-vectors they build Z3 terms. Python's
``and``/``or``/``not``/``if`` on a value that may be symbolic are banned in such code: Z3 raises
on them (or, for ``==`` between expressions, silently compares structure).
"""

from __future__ import annotations

from typing import Any

Bits = Any
"""An int, a bool, or a Z3 expression: what kit-written functions accept and return."""


def _sym(*xs: Any) -> bool:
    # ints and bools first: this runs on every kit call of the concrete hot paths
    for x in xs:
        t = type(x)
        if t is not int and t is not bool and t.__module__.startswith("z3"):
            return True
    return False


def If(c: Bits, a: Bits, b: Bits) -> Bits:
    """Conditional expression: ``a if c else b`` or ``z3.If``."""
    if _sym(c, a, b):
        import z3

        return z3.If(c, a, b)
    return a if c else b


def And(*cs: Bits) -> Bits:
    """Conjunction that works for bools and Z3 booleans."""
    if _sym(*cs):
        import z3

        return z3.And(*cs)
    return all(cs)


def Or(*cs: Bits) -> Bits:
    """Disjunction that works for bools and Z3 booleans."""
    if _sym(*cs):
        import z3

        return z3.Or(*cs)
    return any(cs)


def Not(c: Bits) -> Bits:
    """Negation that works for bools and Z3 booleans."""
    if _sym(c):
        import z3

        return z3.Not(c)
    return not c


def Implies(a: Bits, b: Bits) -> Bits:
    """Implication that works for bools and Z3 booleans."""
    if _sym(a, b):
        import z3

        return z3.Implies(a, b)
    return (not a) or bool(b)


def lshr(x: Bits, n: Bits) -> Bits:
    """Logical (unsigned) right shift: Python ``>>`` on ints, ``z3.LShR`` on bit-vectors.

    A Python int shifted by a bit-vector is first widened to the bit-vector's width.
    """
    if type(x) is int and type(n) is int:  # the concrete hot path (page-table walks)
        return x >> n
    if _sym(x, n):
        import z3

        if not _sym(x):
            x = z3.BitVecVal(x, n.size())
        if not _sym(n):
            n = z3.BitVecVal(n, x.size())
        return z3.LShR(x, n)
    return x >> n


def Sum(*xs: Bits) -> Bits:
    """Sum of ints or Z3 integers/bit-vectors."""
    if _sym(*xs):
        import z3

        return z3.Sum(*xs)
    return sum(xs)


def udiv(x: Bits, d: int) -> Bits:
    """Unsigned integer division by a constant: ``//`` on ints, ``z3.UDiv`` on bit-vectors."""
    if _sym(x):
        import z3

        return z3.UDiv(x, d)
    return x // d
