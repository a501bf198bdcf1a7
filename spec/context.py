"""Calling contexts and effects: the part of the state that decides whether a call may sleep.

Sources: include/linux/preempt.h (in_atomic, in_interrupt), kernel/sched/core.c
(__might_resched, the "BUG: sleeping function called from invalid context" report),
include/linux/sched/mm.h (might_alloc).
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

from spec.errors import ContextError
from spec.logic import Bits


class Context(IntEnum):
    """Where the calling code runs. Every context but PROCESS is atomic (preempt_count != 0)."""

    PROCESS = 0
    SOFTIRQ = 1  # serving a softirq (or bottom halves disabled)
    HARDIRQ = 2  # an interrupt handler
    PREEMPT_DISABLED = 3  # preempt_disable() region
    SPINLOCK = 4  # a spinlock held (spin_lock disables preemption)

    @property
    def atomic(self) -> bool:
        """in_atomic(): any context other than plain process context."""
        return self is not Context.PROCESS

    @staticmethod
    def parse(text: str) -> Context:
        """``process``, ``softirq``, ``hardirq``, ``preempt_disabled``, ``spinlock``, or the
        protocol's ``atomic`` (taken as a spinlock held)."""
        t = text.strip().lower()
        if t == "atomic":
            return Context.SPINLOCK
        for c in Context:
            if c.name.lower() == t:
                return c
        raise ContextError(
            f"unknown context {text!r}: use process, softirq, hardirq, preempt_disabled, "
            "spinlock or atomic")


def context_is_atomic(ctx: Bits) -> Bits:
    """in_atomic() over the context's integer code; kit-friendly for the proofs."""
    return ctx != int(Context.PROCESS)


class Effect(NamedTuple):
    """Something an operation did besides its result: ``sleep`` (direct reclaim entered),
    ``reclaim`` (pages reclaimed), ``kswapd_wake``, ``kswapd_run``, ``warn`` (a kernel WARN or
    allocation-failure report), ``boost`` (watermark boost after a fallback)."""

    kind: str
    nid: int
    detail: str
    ctx: int = 0
    gfp: int = 0
