"""The oracle's request generator: a Hypothesis state machine that drives one subject per example.

:class:`SubjectStateMachine` is what other projects subclass (override :meth:`make_subject`) to
judge their allocator in their own test suite::

    class TestMyAllocator(SubjectStateMachine):
        machine = "small"
        def make_subject(self) -> SubjectAPI:
            return PythonAllocatorAdapter(MyAllocator())
    TestCase = TestMyAllocator.TestCase

Each rule is a *macro-step*: it draws a few parameters and expands them, deterministically and
at run time, into many requests (a burst of k allocations, allocations until the first null,
"free every other live block"), so a session of a thousand requests is a few dozen Hypothesis
steps and shrinking stays cheap. References to earlier allocations are symbolic (an index into
the judge's view of live blocks, taken modulo its length), so every shrunk program still runs.

What is generated (../shared/design/oracle-protocol.md): every request kind of the features the
subject lists; masks built from spec/gfp.py's composites and flags, printed with
:func:`spec.gfp.format_gfp`, restricted to what the protocol allows (no ``__GFP_DMA32`` or
``__GFP_HIGHMEM`` to kmalloc, no zone bits to kmem_cache_alloc, no GFP_ZONE_BAD combination,
never ``__GFP_NOFAIL``, which the kernel never fails); ``process`` and ``atomic`` contexts
(blocking masks in atomic context included: the ``sleep`` rule is about them); every CPU,
explicit and local nodes, with and without ``__GFP_THISNODE``; orders 0..max_order + 2; sizes
at the edges of every kmalloc class, of the page-multiple large kmalloc sizes and of
KMALLOC_MAX_SIZE (mm/slab_common.c); bursts that allocate until null (zones at their
watermarks), fragmentation (allocate many, free every other) and freeing it all again. In
strict mode, invalid requests of every row of the protocol's table too.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule
from hypothesis.strategies._internal.featureflags import FeatureFlags

from oracle.inprocess import SubjectAPI
from spec.gfp import (
    __GFP_ACCOUNT,
    __GFP_COMP,
    __GFP_DIRECT_RECLAIM,
    __GFP_DMA,
    __GFP_DMA32,
    __GFP_HARDWALL,
    __GFP_HIGH,
    __GFP_HIGHMEM,
    __GFP_KSWAPD_RECLAIM,
    __GFP_MEMALLOC,
    __GFP_MOVABLE,
    __GFP_NOMEMALLOC,
    __GFP_NORETRY,
    __GFP_NOWARN,
    __GFP_RECLAIMABLE,
    __GFP_RETRY_MAYFAIL,
    __GFP_THISNODE,
    __GFP_WRITE,
    __GFP_ZERO,
    GFP_ATOMIC,
    GFP_DMA,
    GFP_DMA32,
    GFP_HIGHUSER,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_KERNEL_ACCOUNT,
    GFP_NOFS,
    GFP_NOIO,
    GFP_NOWAIT,
    GFP_TRANSHUGE,
    GFP_TRANSHUGE_LIGHT,
    GFP_USER,
    format_gfp,
    gfp_is_valid,
)
from spec.slab import KMALLOC_CLASSES

_ALLOC_OPS = frozenset({"alloc_pages", "kmalloc", "kmem_cache_alloc", "vmalloc"})
RESULT_KEY = {"alloc_pages": "pfn", "kmalloc": "addr", "kmem_cache_alloc": "addr",
              "vmalloc": "addr"}

# --- GFP masks (include/linux/gfp_types.h): bases and modifiers --------------------------------
_PAGE_BASES = (GFP_KERNEL, GFP_ATOMIC, GFP_NOWAIT, GFP_NOIO, GFP_NOFS, GFP_USER, GFP_HIGHUSER,
               GFP_HIGHUSER_MOVABLE, GFP_KERNEL_ACCOUNT, GFP_TRANSHUGE_LIGHT, GFP_TRANSHUGE,
               GFP_DMA, GFP_DMA32, GFP_KERNEL | __GFP_DMA, GFP_KERNEL | __GFP_DMA32,
               GFP_ATOMIC | __GFP_DMA, 0)
_KMALLOC_BASES = (GFP_KERNEL, GFP_ATOMIC, GFP_NOWAIT, GFP_NOIO, GFP_NOFS, GFP_USER,
                  GFP_KERNEL_ACCOUNT, GFP_DMA, GFP_KERNEL | __GFP_DMA, GFP_ATOMIC | __GFP_DMA, 0)
_CACHE_BASES = (GFP_KERNEL, GFP_ATOMIC, GFP_NOWAIT, GFP_NOIO, GFP_NOFS, GFP_USER,
                GFP_KERNEL_ACCOUNT, 0)
_MODS = (0, __GFP_ZERO, __GFP_NOWARN, __GFP_NORETRY, __GFP_RETRY_MAYFAIL, __GFP_HIGH, __GFP_COMP,
         __GFP_NOMEMALLOC, __GFP_MEMALLOC, __GFP_RECLAIMABLE, __GFP_MOVABLE, __GFP_ACCOUNT,
         __GFP_HARDWALL, __GFP_WRITE, __GFP_DIRECT_RECLAIM, __GFP_KSWAPD_RECLAIM)
_NO_ZONE_BITS = ~(__GFP_DMA | __GFP_DMA32 | __GFP_MOVABLE | __GFP_HIGHMEM)  # GFP_ZONEMASK
_KMALLOC_ALLOWED = ~(__GFP_DMA32 | __GFP_HIGHMEM | __GFP_MOVABLE)  # GFP_SLAB_BUG_MASK, no caches
_VMALLOC_MASKS = (GFP_KERNEL, GFP_KERNEL | __GFP_ZERO, GFP_KERNEL_ACCOUNT, GFP_NOFS, GFP_NOIO,
                  GFP_USER, GFP_HIGHUSER, GFP_KERNEL | __GFP_NOWARN,
                  GFP_KERNEL | __GFP_RETRY_MAYFAIL, GFP_KERNEL | __GFP_NORETRY)
_CACHE_SIZES = (1, 7, 8, 9, 24, 63, 64, 65, 100, 192, 256, 1000, 4095, 4096, 4097, 8192, 32768)
_CACHE_ALIGNS = (0, 8, 16, 32, 64, 128, 256, 4096)
# the end of a liveness session (SubjectStateMachine._drain): blocking masks whose highest zone
# is Normal, DMA32 and DMA, so each zone is drained down to its own min + lowmem_reserve
_DRAIN_MASKS = tuple(format_gfp(m) for m in (GFP_KERNEL, GFP_KERNEL | __GFP_DMA32,
                                             GFP_KERNEL | __GFP_DMA))
DRAIN_EVERY = 4  # sessions: the others end as they are, so that the generator, which names
# a defect more precisely (range, overlap, sleep), meets it before a drain's liveness report;
# once a liveness failure is being shrunk, every session drains (the failure may need it)
_BURST_CHUNK = 64  # requests per pipelined write (independent allocations or distinct frees)


def _mask(bases: tuple[int, ...], base: int, mod: int, thisnode: bool,
          allowed: int = ~0) -> int:
    """bases[base] | _MODS[mod] | __GFP_THISNODE, minus bits the kind may not carry; a
    modifier that makes the mask invalid (gfp_is_valid, include/linux/gfp.h) is dropped."""
    m = bases[base % len(bases)]
    extra = (_MODS[mod % len(_MODS)] | (__GFP_THISNODE if thisnode else 0)) & allowed
    if gfp_is_valid(m | extra):
        m |= extra
    elif gfp_is_valid(m | (extra & __GFP_THISNODE)):
        m |= extra & __GFP_THISNODE
    return m & allowed


def kmalloc_edge_sizes(page_size: int, max_order: int) -> tuple[int, ...]:
    """0, 1, each kmalloc class size and its neighbours, the large sizes around each page
    order, and KMALLOC_MAX_SIZE (page_size << max_order) and its neighbours."""
    sizes = {0, 1}
    for c in KMALLOC_CLASSES:
        sizes.update((c - 1, c, c + 1))
    for o in range(1, max_order + 1):
        s = page_size << o
        sizes.update((s - 1, s, s + 1))
    top = page_size << max_order
    sizes.update((top - 1, top, top + 1, 2 * top))
    return tuple(sorted(sizes))


def vmalloc_sizes(page_size: int) -> tuple[int, ...]:
    return (0, 1, page_size - 1, page_size, page_size + 1, 2 * page_size, 3 * page_size + 1,
            16 * page_size, 64 * page_size + 5, 256 * page_size)


# --- outcomes ---------------------------------------------------------------------------------
@dataclass
class Failure:
    """What went wrong in one session: a rule's violation or a protocol failure, the
    requests sent up to and including the one that showed it, and the answer."""

    kind: str  # "violation" or "protocol"
    rule: str  # the violated rule, or "protocol"
    message: str
    request: dict[str, Any] | None
    answer: dict[str, Any] | None
    detail: str
    log: list[dict[str, Any]]
    violation: Any = None  # oracle.judge.Violation
    protocol_kind: str | None = None  # ProtocolFailure.kind
    stderr_tail: str = ""

    def same_as(self, other: Failure) -> bool:
        """The same failure for shrinking purposes: same rule (and same protocol kind)."""
        return (self.kind, self.rule, self.protocol_kind) == (
            other.kind, other.rule, other.protocol_kind)


class OracleFailure(AssertionError):  # noqa: N818 - an assertion, named for what failed
    """Raised inside a Hypothesis example; one subclass per rule so that shrinking keeps the
    rule (Hypothesis tells failures apart by exception type)."""

    failure: Failure

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.rule}: {failure.message}"
                         + (f" ({failure.detail})" if failure.detail else ""))
        self.failure = failure


_FAILURE_CLASSES: dict[str, type[OracleFailure]] = {}


def failure_class(rule: str) -> type[OracleFailure]:
    cls = _FAILURE_CLASSES.get(rule)
    if cls is None:
        name = "".join(p.capitalize() for p in rule.replace("-", "_").split("_")) + "Failure"
        cls = type(name, (OracleFailure,), {})
        _FAILURE_CLASSES[rule] = cls
    return cls


class StopRun(BaseException):
    """Ends the whole Hypothesis run at once (budget used up; a hang, which shrinking would
    repeat at the cost of a timeout per try). A BaseException, so Hypothesis does not catch
    it as a test failure; machine teardown still runs and reaps the subject."""

    def __init__(self, reason: str, failure: Failure | None = None, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.failure = failure


# --- statistics and the per-run context -----------------------------------------------------------
@dataclass
class RunStats:
    """Counts over a whole run (every session, shrinking included)."""

    valid: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    rules_checked: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    sessions: int = 0
    requests: int = 0
    violations: int = 0
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        kinds = sorted(set(self.valid) | set(self.invalid))
        return {
            "requests": self.requests, "sessions": self.sessions,
            "per_kind": {k: {"valid": self.valid[k], "invalid": self.invalid[k]} for k in kinds},
            "answers": dict(sorted(self.answers.items())),
            "rules_checked": dict(sorted(self.rules_checked.items())),
            "skipped_invalid": self.skipped, "violations": self.violations,
            "seconds": round(time.monotonic() - self.started, 3),
        }


@dataclass
class RunContext:
    """Shared by every example of one run: configuration, budget, statistics, failures."""

    hello: dict[str, Any]
    strict: bool = False
    mode: str = "spec"
    pages_only: bool = False
    gen_deadline: float | None = None  # time.monotonic() after which generation stops
    shrink_seconds: Callable[[], float] | None = None  # called at the first failure
    progress: Callable[[RunStats], None] | None = None
    stats: RunStats = field(default_factory=RunStats)
    first_failure: Failure | None = None
    last_failure: Failure | None = None
    shrinking: bool = False
    stop: StopRun | None = None
    first_failure_after: int = 0  # requests sent in the run when the first failure showed
    first_failure_at: float = 0.0  # time.monotonic() then

    def record(self, failure: Failure) -> None:
        self.stats.violations += 1
        if self.first_failure is None:
            self.first_failure = failure
            self.first_failure_after = self.stats.requests
            self.first_failure_at = time.monotonic()
            self.shrinking = True
            if self.shrink_seconds is not None:
                from hypothesis.internal.conjecture import engine

                engine.MAX_SHRINKING_SECONDS = self.shrink_seconds()  # type: ignore[assignment]
        self.last_failure = failure

    def check_budget(self) -> None:
        if self.stop is not None:
            raise self.stop
        if (not self.shrinking and self.gen_deadline is not None
                and time.monotonic() > self.gen_deadline):
            self.stop = StopRun("budget")
            raise self.stop


def _not_an_object(req: dict[str, Any], ans: object) -> Exception:
    """The transport's garbage failure for an in-process answer that is not a dict."""
    from oracle.transport import ProtocolFailure

    return ProtocolFailure("garbage", f"answer to seq {req.get('seq')} is not a JSON object",
                           seq=req.get("seq"), request=req, line=repr(ans)[:500])


# --- one session ----------------------------------------------------------------------------------
class Session:
    """A subject, a judge and the log of one protocol session (hello ... bye)."""

    def __init__(self, subject: SubjectAPI, ctx: RunContext) -> None:
        from oracle.judge import Judge

        self.subject = subject
        self.ctx = ctx
        self.judge = Judge(ctx.hello, strict=ctx.strict,
                           mode="exact" if ctx.mode == "exact" else "spec",
                           pages_only=True if ctx.pages_only else None)
        self.seq = 0
        self.log: list[dict[str, Any]] = []
        self.features: tuple[str, ...] = ()
        self.closed = False
        self._many = getattr(subject, "request_many", None)
        self._violated: Failure | None = None
        ctx.stats.sessions += 1

    # transport
    def _fail_protocol(self, e: BaseException, req: dict[str, Any]) -> OracleFailure:
        from oracle.transport import ProtocolFailure

        if isinstance(e, ProtocolFailure):
            kind, msg, tail, line = e.kind, e.message, e.stderr_tail, e.line
        else:  # an in-process subject raised: its crash
            import traceback

            kind, msg, line = "crash", f"the subject raised {e!r}", None
            tail = "".join(traceback.format_exception(e))[-4000:]
        f = Failure("protocol", "protocol", msg, req, None,
                    f"{kind}" + (f"; output line: {line!r}" if line else ""),
                    list(self.log), protocol_kind=kind, stderr_tail=tail)
        self.ctx.record(f)
        self.close()
        if kind == "hang":
            self.ctx.stop = StopRun("hang", f)
            raise self.ctx.stop
        return failure_class(f"protocol-{kind}")(f)

    def _violation(self, v: Any, req: dict[str, Any], ans: dict[str, Any]) -> OracleFailure:
        f = Failure("violation", v.rule, v.message, v.request or req,
                    v.answer if v.answer is not None else ans, v.detail, list(self.log),
                    violation=v)
        self.ctx.record(f)
        self._violated = f  # its stderr tail is taken at close(), once the subject is gone
        return failure_class(v.rule)(f)

    def start(self) -> tuple[str, ...]:
        hello = dict(self.ctx.hello)
        hello["seq"] = self.seq = 1
        self.log.append(hello)
        try:
            ans = self.subject.request(hello)
        except KeyboardInterrupt:
            self.interrupted()
            raise
        except Exception as e:
            raise self._fail_protocol(e, hello) from None
        for v in self.judge.check_hello(ans):
            raise self._violation(v, hello, ans)
        self.features = tuple(self.judge.features)
        return self.features

    def run(self, reqs: Sequence[dict[str, Any]], *, stop_on_null: bool = False,
            force: bool = False) -> list[dict[str, Any] | None]:
        """Send requests (pipelined when the subject can), judge every answer in order;
        None for a request not sent (invalid outside strict mode). ``stop_on_null`` ends
        after the first null result (later ones in the same chunk are still judged)."""
        stats = self.ctx.stats
        judge = self.judge
        out: list[dict[str, Any] | None] = []
        chunk = 32 if stop_on_null else _BURST_CHUNK
        prev: dict[str, Any] | None = None
        prev_valid = False
        valid, is_valid = stats.valid, judge.is_valid
        for i in range(0, len(reqs), chunk):
            batch: list[dict[str, Any]] = []
            for r0 in reqs[i:i + chunk]:
                op = r0["op"]
                r = {**r0, "seq": self.seq + 1}
                # a burst repeats one allocation request: an allocation's validity depends on
                # its own fields only (and on its cache existing), so judge it once per burst
                if (r0 is prev and prev_valid) or is_valid(r):
                    prev, prev_valid = r0, op in _ALLOC_OPS
                    valid[op] += 1
                elif (self.ctx.strict or force) and judge.within_protocol(r):
                    stats.invalid[op] += 1
                else:
                    stats.skipped += 1
                    out.append(None)
                    continue
                self.seq += 1
                batch.append(r)
            if not batch:
                continue
            try:
                if self._many is not None and len(batch) > 1:
                    answers = self._many(batch)
                else:
                    answers = [self.subject.request(r) for r in batch]
            except KeyboardInterrupt:
                self.interrupted()
                raise
            except Exception as e:
                # the request the transport failed at (a pipelined batch may go on past it):
                # the log, and so the replay file, ends there
                failed = getattr(e, "request", None)
                upto = next((k + 1 for k, r in enumerate(batch) if r is failed), len(batch))
                self.log.extend(batch[:upto])
                raise self._fail_protocol(e, batch[upto - 1]) from None
            nulls = False
            log_append, counts, observe = self.log.append, stats.answers, judge.observe
            for r, a in zip(batch, answers, strict=True):
                log_append(r)
                stats.requests += 1
                if type(a) is not dict:  # an in-process subject's bug (a pipe gives dicts)
                    raise self._fail_protocol(_not_an_object(r, a), r) from None
                key = RESULT_KEY.get(r["op"])
                if "error" in a:
                    counts["error"] += 1
                elif key is not None:
                    if a.get(key) is None:
                        counts["null"] += 1
                        nulls = True
                    else:
                        counts["result"] += 1
                else:
                    counts["ok"] += 1
                for v in observe(r, a):
                    raise self._violation(v, r, a)
                out.append(a)
            if stop_on_null and nulls:
                break
        return out

    def finish(self) -> None:
        """bye, then close."""
        if self.closed:
            return
        self.seq += 1
        bye = {"op": "bye", "seq": self.seq}
        self.log.append(bye)
        try:
            ans = self.subject.request(bye)
        except KeyboardInterrupt:
            self.interrupted()
            raise
        except Exception as e:
            raise self._fail_protocol(e, bye) from None
        finally:
            self.close()
        self.ctx.stats.requests += 1
        if type(ans) is not dict:
            raise self._fail_protocol(_not_an_object(bye, ans), bye) from None
        if ans.get("seq") != bye["seq"] or ans.get("ok") is not True:
            f = Failure("protocol", "protocol", f"bye answered {ans!r}", bye, ans,
                        "bye must be answered {\"seq\": N, \"ok\": true}", list(self.log),
                        protocol_kind="bye")
            self.ctx.record(f)
            raise failure_class("protocol-bye")(f)

    def close(self) -> None:
        """Close the subject; the judge's rules-checked counts go to the run's statistics."""
        if not self.closed:
            self.closed = True
            self.ctx.stats.rules_checked.update(self.judge.rules_checked)
            self.subject.close()
            # "Anything the subject prints to standard error is kept for the report": for a
            # rule's violation too, not only for a transport failure
            tail = getattr(self.subject, "stderr_tail", None)
            if self._violated is not None and not self._violated.stderr_tail and callable(tail):
                self._violated.stderr_tail = str(tail(0.5))

    def interrupted(self) -> None:
        """Ctrl-C: stop the whole run (teardown must not send bye into a half-read pipe)."""
        self.ctx.stop = StopRun("interrupted")
        self.close()


# --- views of the judge ---------------------------------------------------------------------------
def _cache_live(view: Any) -> Sequence[int]:
    for attr in ("live", "objects", "addrs", "live_addrs"):
        v = getattr(view, attr, None)
        if v is not None:
            return list(v)
    return []


# --- the state machine ---------------------------------------------------------------------------
_WHERE = st.tuples(st.integers(0, 31), st.integers(0, 31), st.booleans(), st.booleans(),
                   st.integers(-1, 7), st.integers(0, 63))
_K = st.integers(1, 256)  # requests per burst: many per Hypothesis step (its cost per step)
_SEED = st.integers(0, 2**16)


def _has(feature: str) -> Callable[[Any], bool]:
    """A precondition: the subject lists ``feature``. Named functions, not lambdas: Hypothesis
    describes every precondition on every step, and describing a lambda reads its source."""
    def has_feature(self: Any) -> bool:
        return feature in self.features
    has_feature.__name__ = f"has_{feature}"
    return has_feature


def _has_caches(self: Any) -> bool:
    return "slab" in self.features and bool(self.cache_names)


def _may_create_cache(self: Any) -> bool:
    """Hypothesis favours rules with few arguments, such as cache_create and cache_destroy:
    bounding the live caches (at most 6, destroy only with 2 or more) keeps them from
    crowding out the allocation bursts."""
    return "slab" in self.features and len(self.cache_names) < 6


def _may_destroy_cache(self: Any) -> bool:
    return "slab" in self.features and len(self.cache_names) >= 2


def _strict(self: Any) -> bool:
    return bool(self.ctx.strict)


class SubjectStateMachine(RuleBasedStateMachine):
    """Drives one subject per example and judges every answer with :class:`oracle.judge.Judge`.

    Subclasses override :meth:`make_subject`, and may set the class attributes ``machine``
    (a preset name, a machine file or a hello dict), ``strict``, ``mode`` and ``pages_only``.
    A failure raises an :class:`OracleFailure` (an AssertionError) naming the rule."""

    machine: ClassVar[str | dict[str, Any]] = "small"
    strict: ClassVar[bool] = False
    mode: ClassVar[str] = "spec"
    pages_only: ClassVar[bool] = False
    context: ClassVar[RunContext | None] = None

    def make_subject(self) -> SubjectAPI:
        """A fresh subject for one session; override this."""
        raise NotImplementedError("override make_subject() to return a SubjectAPI")

    @classmethod
    def run_context(cls) -> RunContext:
        ctx = cls.__dict__.get("context")
        if ctx is None:
            from oracle.machines import hello_of

            ctx = RunContext(hello_of(cls.machine), strict=cls.strict, mode=cls.mode,
                             pages_only=cls.pages_only)
            cls.context = ctx
        return ctx

    def __init__(self) -> None:
        super().__init__()
        # No swarm testing: Hypothesis would disable a random subset of rules per example, and
        # with the few dozen (long) examples of a run whole request kinds went unsent.
        self._rules_strategy.enabled_rules_strategy = st.just(FeatureFlags())
        ctx = self.ctx = type(self).run_context()
        ctx.check_budget()
        h = ctx.hello
        self.page_size = int(h.get("page_size", 4096))
        self.max_order = int(h["max_order"])
        self.nodes = [int(n["nid"]) for n in h["nodes"]]
        self.cpus = [int(c) for n in h["nodes"] for c in n["cpus"]]
        self.page_offset = int(h.get("page_offset", "0xffff888000000000"), 16)
        self.max_pfn = max(int(z["start_pfn"]) + int(z["pages"])
                           for n in h["nodes"] for z in n["zones"])
        self.kmalloc_sizes = kmalloc_edge_sizes(self.page_size, self.max_order)
        self.vmalloc_sizes = vmalloc_sizes(self.page_size)
        self.cache_names: list[str] = []
        self.n_caches = 0
        self.freed_pages: list[tuple[int, int]] = []
        self.freed_addrs: list[tuple[str, int]] = []  # (op, addr) recently freed
        try:
            subject = self.make_subject()
        except Exception as e:  # the subject cannot even start: no use trying again
            f = Failure("protocol", "protocol", f"the subject cannot start: {e}", None, None,
                        "crash", [], protocol_kind="crash",
                        stderr_tail=getattr(e, "stderr_tail", ""))
            ctx.record(f)
            ctx.stop = StopRun("cannot start", f)
            raise ctx.stop from None
        self.session = Session(subject, ctx)
        feats = self.session.start()
        if ctx.pages_only:
            feats = tuple(f for f in feats if f == "pages")
            if not feats:  # nothing to send in a pages-only session: end it, and the phase
                self.session.finish()
                ctx.stop = StopRun("no-pages", message="pages-only sessions: the subject "
                                   f"does not list the pages feature (it lists "
                                   f"{', '.join(self.session.features)})")
                raise ctx.stop
        self.features = feats

    def teardown(self) -> None:
        s = getattr(self, "session", None)
        if s is None or s.closed:
            return
        if self.ctx.stop is not None:
            s.close()
            return
        try:
            self._drain()
        except BaseException:
            s.close()  # a violation (or the budget) in the drain: no bye, but no process left
            raise
        s.finish()
        if self.ctx.progress is not None:
            self.ctx.progress(self.ctx.stats)

    def _drain(self) -> None:
        """The end of a session where liveness is judged: free every live block, then
        allocate blocking requests of each order from max_order down, each until null, for
        the highest zones Normal, DMA32 and DMA in turn. A correct subject answers null only
        once every allowed zone is at min + lowmem_reserve; a subject that lost pages (a leak
        on free, a block never merged back) answers one of them too early, which the
        liveness rule reports. The protocol has no request that asks a subject what it has
        free, and bye frees nothing: this makes a leak visible with the protocol's own rule.
        Cheap: about one request per max-order block of memory, plus a few per order."""
        j = self.session.judge
        first = self.ctx.first_failure
        shrinking_liveness = first is not None and first.rule == "liveness"
        if j.violations or not j.liveness_active or (self.ctx.stats.sessions % DRAIN_EVERY
                                                     and not shrinking_liveness):
            return  # after a violation (teardown still runs) the session just ends: bye
        self._free_pages([{"op": "free_pages", "pfn": p, "order": o}
                          for p, o in list(j.live_blocks())])
        pages = sum(int(z["pages"]) for n in self.ctx.hello["nodes"] for z in n["zones"])
        for mask in _DRAIN_MASKS:
            for order in range(self.max_order, -1, -1):
                req = {"op": "alloc_pages", "order": order, "gfp": mask, "nid": -1,
                       "cpu": self.cpus[0], "ctx": "process"}
                left = (pages >> order) + 1  # more answers than that would overlap anyway
                while left > 0 and j.liveness_active:
                    n = min(64, left)
                    ans = self.session.run([req] * n, stop_on_null=True)
                    left -= n
                    if any(a is None or a.get("pfn") is None for a in ans):
                        break

    # helpers ------------------------------------------------------------------------------------
    def _step(self) -> None:
        self.ctx.check_budget()

    def _after(self) -> None:
        if self.ctx.progress is not None:
            self.ctx.progress(self.ctx.stats)

    def _where(self, w: tuple[int, int, bool, bool, int, int], bases: tuple[int, ...],
               allowed: int = ~0) -> dict[str, Any]:
        base, mod, thisnode, atomic, node, cpu = w
        return {"gfp": format_gfp(_mask(bases, base, mod, thisnode, allowed)),
                "nid": -1 if node < 0 else self.nodes[node % len(self.nodes)],
                "cpu": self.cpus[cpu % len(self.cpus)],
                "ctx": "atomic" if atomic else "process"}

    def _order(self, top: int, rnd: random.Random | None) -> int:
        t = top % (self.max_order + 3)
        if rnd is None:
            return t
        return min(rnd.randint(0, t), rnd.randint(0, t))  # small orders more often

    def _pick(self, items: Sequence[Any], pattern: int, index: int, count: int,
              seed: int) -> list[Any]:
        """Which of the live items a free step frees: 0 one (the index-th), 1 every other
        (fragmentation), 2 all, 3 the newest ``count``, 4 ``count`` at random."""
        n = len(items)
        if n == 0:
            return []
        p = pattern % 5
        if p == 0:
            return [items[index % n]]
        if p == 1:
            return list(items[index % 2::2])
        if p == 2:
            return list(items)
        if p == 3:
            return list(items[-count:])
        return random.Random(seed).sample(list(items), min(count, n))

    # pages ---------------------------------------------------------------------------------------
    @precondition(_has("pages"))
    @rule(burst=st.tuples(_K, st.integers(0, 12), st.booleans(), _WHERE, _SEED))
    def alloc_pages_burst(self, burst: tuple[int, int, bool, tuple[int, int, bool, bool, int,
                                                                   int], int]) -> None:
        """k alloc_pages of orders up to ``top`` (one mask, node, CPU and context). One
        argument: Hypothesis orders rules by argument count and favours the first one that
        applies, which should be this, the plainest step, not cache creation."""
        k, top, spread, w, seed = burst
        self._step()
        rnd = random.Random(seed) if spread else None
        where = self._where(w, _PAGE_BASES)
        if rnd is None:  # one request k times: Session.run judges its validity once
            self.session.run([{"op": "alloc_pages", "order": self._order(top, None),
                               **where}] * k)
        else:
            self.session.run([{"op": "alloc_pages", "order": self._order(top, rnd), **where}
                              for _ in range(k)])
        self._after()

    @precondition(_has("pages"))
    @rule(top=st.integers(0, 12), cap=st.integers(1, 4096), w=_WHERE)
    def alloc_pages_until_null(self, top: int, cap: int,
                               w: tuple[int, int, bool, bool, int, int]) -> None:
        """Allocate blocks of one order until the subject answers null (at most ``cap``):
        drives the allowed zones to their watermarks, where ``liveness`` bites."""
        self._step()
        req = {"op": "alloc_pages", "order": self._order(top, None),
               **self._where(w, _PAGE_BASES)}
        done = 0
        while done < cap:
            n = min(64, cap - done)
            ans = self.session.run([req] * n, stop_on_null=True)
            done += n
            if any(a is not None and a.get("pfn") is None for a in ans):
                break
        self._after()

    @precondition(_has("pages"))
    @rule(top=st.integers(0, 12), k=st.integers(2, 512), w=_WHERE)
    def fragment_pages(self, top: int, k: int, w: tuple[int, int, bool, bool, int, int]) -> None:
        """Allocate k blocks of one order, then free every other one of them."""
        self._step()
        order = self._order(top, None)
        req = {"op": "alloc_pages", "order": order, **self._where(w, _PAGE_BASES)}
        ans = self.session.run([req] * k)
        got = [a["pfn"] for a in ans if a is not None and a.get("pfn") is not None]
        frees = [{"op": "free_pages", "pfn": p, "order": order} for p in got[::2]]
        self._free_pages(frees)
        self._after()

    def _free_pages(self, frees: list[dict[str, Any]]) -> None:
        self.session.run(frees)
        self.freed_pages = [(f["pfn"], f["order"]) for f in frees[-8:]]

    @precondition(_has("pages"))
    @rule(pattern=st.integers(0, 4), index=st.integers(0, 2**16), count=_K, seed=_SEED)
    def free_pages_step(self, pattern: int, index: int, count: int, seed: int) -> None:
        """Free live blocks: one, every other, all, the newest, or a random few."""
        self._step()
        live = list(self.session.judge.live_blocks())
        self._free_pages([{"op": "free_pages", "pfn": p, "order": o}
                          for p, o in self._pick(live, pattern, index, count, seed)])
        self._after()

    # kmalloc -------------------------------------------------------------------------------------
    def _kmalloc_where(self, w: tuple[int, int, bool, bool, int, int]) -> dict[str, Any]:
        return self._where(w, _KMALLOC_BASES, _KMALLOC_ALLOWED)

    @precondition(_has("kmalloc"))
    @rule(k=_K, size=st.integers(0, 127), spread=st.booleans(), w=_WHERE, seed=_SEED)
    def kmalloc_burst(self, k: int, size: int, spread: bool,
                      w: tuple[int, int, bool, bool, int, int], seed: int) -> None:
        """k kmallocs of one edge size, or of edge sizes at random."""
        self._step()
        sizes = self.kmalloc_sizes
        rnd = random.Random(seed)
        where = self._kmalloc_where(w)
        if not spread:  # one request k times: Session.run judges its validity once
            self.session.run([{"op": "kmalloc", "size": sizes[size % len(sizes)], **where}] * k)
        else:
            self.session.run([{"op": "kmalloc", "size": sizes[rnd.randrange(len(sizes))],
                               **where} for _ in range(k)])
        self._after()

    @precondition(_has("kmalloc"))
    @rule(size=st.integers(0, 127), cap=st.integers(1, 2048), w=_WHERE)
    def kmalloc_until_null(self, size: int, cap: int,
                           w: tuple[int, int, bool, bool, int, int]) -> None:
        """kmalloc one size until null (at most ``cap`` requests)."""
        self._step()
        req = {"op": "kmalloc", "size": self.kmalloc_sizes[size % len(self.kmalloc_sizes)],
               **self._kmalloc_where(w)}
        done = 0
        while done < cap:
            n = min(64, cap - done)
            ans = self.session.run([req] * n, stop_on_null=True)
            done += n
            if any(a is not None and a.get("addr") is None for a in ans):
                break
        self._after()

    @precondition(_has("kmalloc"))
    @rule(pattern=st.integers(0, 5), index=st.integers(0, 2**16), count=_K, seed=_SEED)
    def kfree_step(self, pattern: int, index: int, count: int, seed: int) -> None:
        """kfree live kmalloc objects (pattern 5: kfree of NULL and ZERO_SIZE_PTR)."""
        self._step()
        if pattern == 5:
            self.session.run([{"op": "kfree", "addr": "0x0"}, {"op": "kfree", "addr": "0x10"}])
            return
        live = [a for a in self.session.judge.live_kmalloc() if a > 0x10]
        frees = [{"op": "kfree", "addr": hex(a)}
                 for a in self._pick(live, pattern, index, count, seed)]
        self.session.run(frees)
        self.freed_addrs = [("kfree", int(f["addr"], 16)) for f in frees[-8:]]
        self._after()

    # slab ----------------------------------------------------------------------------------------
    def _caches(self) -> Mapping[str, Any]:
        return self.session.judge.caches()

    @precondition(_may_create_cache)
    @rule(size=st.integers(0, 63), align=st.integers(0, 15))
    def cache_create(self, size: int, align: int) -> None:
        self._step()
        name = f"oracle_cache_{self.n_caches}"
        self.n_caches += 1
        ans = self.session.run([{"op": "kmem_cache_create", "name": name,
                                 "size": _CACHE_SIZES[size % len(_CACHE_SIZES)],
                                 "align": _CACHE_ALIGNS[align % len(_CACHE_ALIGNS)]}])
        if ans and ans[0] is not None and ans[0].get("ok"):
            self.cache_names.append(name)

    @precondition(_has_caches)
    @rule(cache=st.integers(0, 63), k=st.integers(1, 256), w=_WHERE)
    def cache_alloc_burst(self, cache: int, k: int,
                          w: tuple[int, int, bool, bool, int, int]) -> None:
        """k kmem_cache_alloc from one cache (no zone bits: a cache's zone is its own)."""
        self._step()
        name = self.cache_names[cache % len(self.cache_names)]
        req = {"op": "kmem_cache_alloc", "name": name,
               **self._where(w, _CACHE_BASES, _NO_ZONE_BITS)}
        self.session.run([req] * k, stop_on_null=k > 64)
        self._after()

    @precondition(_has_caches)
    @rule(cache=st.integers(0, 63), pattern=st.integers(0, 4), index=st.integers(0, 2**16),
          count=_K, seed=_SEED, with_kfree=st.booleans())
    def cache_free_step(self, cache: int, pattern: int, index: int, count: int, seed: int,
                        with_kfree: bool) -> None:
        """Free objects of one cache with kmem_cache_free (or kfree, which the protocol
        allows for cache objects)."""
        self._step()
        name = self.cache_names[cache % len(self.cache_names)]
        view = self._caches().get(name)
        if view is None:
            return
        live = _cache_live(view)
        picked = self._pick(live, pattern, index, count, seed)
        if with_kfree and "kmalloc" in self.features:
            frees = [{"op": "kfree", "addr": hex(a)} for a in picked]
        else:
            frees = [{"op": "kmem_cache_free", "name": name, "addr": hex(a)} for a in picked]
        self.session.run(frees)
        self.freed_addrs = [(f["op"], int(f["addr"], 16)) for f in frees[-8:]]
        self._after()

    @precondition(_may_destroy_cache)
    @rule(cache=st.integers(0, 63))
    def cache_destroy(self, cache: int) -> None:
        """Free a cache's objects, then destroy it."""
        self._step()
        name = self.cache_names[cache % len(self.cache_names)]
        view = self._caches().get(name)
        if view is not None:
            self.session.run([{"op": "kmem_cache_free", "name": name, "addr": hex(a)}
                              for a in _cache_live(view)])
        ans = self.session.run([{"op": "kmem_cache_destroy", "name": name}])
        if ans and ans[0] is not None and ans[0].get("ok"):
            self.cache_names.remove(name)

    # vmalloc -------------------------------------------------------------------------------------
    @precondition(_has("vmalloc"))
    @rule(k=st.integers(1, 16), size=st.integers(0, 31), spread=st.booleans(),
          mask=st.integers(0, 15), cpu=st.integers(0, 63), seed=_SEED)
    def vmalloc_burst(self, k: int, size: int, spread: bool, mask: int, cpu: int,
                      seed: int) -> None:
        """k vmallocs (process context: vmalloc may sleep) of edge sizes."""
        self._step()
        sizes = self.vmalloc_sizes
        rnd = random.Random(seed)
        gfp = format_gfp(_VMALLOC_MASKS[mask % len(_VMALLOC_MASKS)])
        self.session.run([{"op": "vmalloc", "size": sizes[rnd.randrange(len(sizes)) if spread
                                                          else size % len(sizes)],
                           "gfp": gfp, "cpu": self.cpus[cpu % len(self.cpus)],
                           "ctx": "process"} for _ in range(k)])
        self._after()

    @precondition(_has("vmalloc"))
    @rule(pattern=st.integers(0, 4), index=st.integers(0, 2**16), count=_K, seed=_SEED)
    def vfree_step(self, pattern: int, index: int, count: int, seed: int) -> None:
        self._step()
        live = list(self.session.judge.live_vmalloc())
        frees = [{"op": "vfree", "addr": hex(a)}
                 for a in self._pick(live, pattern, index, count, seed)]
        self.session.run(frees)
        self.freed_addrs = [("vfree", int(f["addr"], 16)) for f in frees[-8:]]
        self._after()

    # invalid requests (strict mode) ---------------------------------------------------------------
    @precondition(_strict)
    @rule(kind=st.integers(0, 31), index=st.integers(0, 2**16), n=st.integers(1, 8))
    def invalid_request(self, kind: int, index: int, n: int) -> None:
        """``n`` requests of rows of the protocol's "invalid" column, built from the current
        view (a double free, a wrong order, an unknown cache, ...), one at a time. The judge
        classifies each: one that turns out valid (the block was reused) is sent as valid."""
        self._step()
        for j in range(n):
            cands = self._invalid_candidates(index + j)
            if cands:
                self.session.run([cands[(kind + 5 * j) % len(cands)]], force=True)

    def _invalid_candidates(self, i: int) -> list[dict[str, Any]]:
        j = self.session.judge
        c: list[dict[str, Any]] = []
        if "pages" in self.features:
            c.append({"op": "free_pages", "pfn": self.max_pfn + 3, "order": 0})
            if self.freed_pages:
                p, o = self.freed_pages[i % len(self.freed_pages)]
                c.append({"op": "free_pages", "pfn": p, "order": o})
            live = list(j.live_blocks())
            if live:
                p, o = live[i % len(live)]
                c.append({"op": "free_pages", "pfn": p, "order": o + 1})
                if o > 0:
                    c.append({"op": "free_pages", "pfn": p, "order": o - 1})
                    c.append({"op": "free_pages", "pfn": p + 1, "order": 0})
            km = [a for a in j.live_kmalloc() if a > 0x10]
            if km:
                c.append({"op": "free_pages", "pfn": (km[i % len(km)] - self.page_offset)
                          // self.page_size, "order": 0})
        if "kmalloc" in self.features:
            km = [a for a in j.live_kmalloc() if a > 0x10]
            if km:
                c.append({"op": "kfree", "addr": hex(km[i % len(km)] + 1)})
            for op, a in self.freed_addrs:
                if op == "kfree":
                    c.append({"op": "kfree", "addr": hex(a)})
                    break
            c.append({"op": "kfree", "addr": hex(self.page_offset + 8)})
        if "slab" in self.features:
            c.append({"op": "kmem_cache_create", "name": "oracle_bad", "size": 0, "align": 0})
            c.append({"op": "kmem_cache_create", "name": "oracle_bad",
                      "size": self.page_size * 8 + 1, "align": 0})
            c.append({"op": "kmem_cache_create", "name": "oracle_bad", "size": 64, "align": 24})
            c.append({"op": "kmem_cache_create", "name": "oracle_bad", "size": 64,
                      "align": self.page_size * 2})
            c.append({"op": "kmem_cache_alloc", "name": "no_such_cache", "gfp": "GFP_KERNEL",
                      "nid": -1, "cpu": self.cpus[0], "ctx": "process"})
            c.append({"op": "kmem_cache_destroy", "name": "no_such_cache"})
            caches = self._caches()
            if self.cache_names:
                name = self.cache_names[i % len(self.cache_names)]
                c.append({"op": "kmem_cache_create", "name": name, "size": 32, "align": 0})
                view = caches.get(name)
                objs = _cache_live(view) if view is not None else []
                if objs:
                    obj = objs[i % len(objs)]
                    other = [n for n in self.cache_names if n != name]
                    c.append({"op": "kmem_cache_free", "name": other[0] if other
                              else "no_such_cache", "addr": hex(obj)})
                    c.append({"op": "kmem_cache_free", "name": name, "addr": hex(obj + 1)})
                    c.append({"op": "kmem_cache_destroy", "name": name})
                km = [a for a in j.live_kmalloc() if a > 0x10]
                if km:
                    c.append({"op": "kmem_cache_free", "name": name, "addr": hex(km[0])})
        if "vmalloc" in self.features:
            c.append({"op": "vmalloc", "size": self.page_size, "gfp": "GFP_KERNEL",
                      "cpu": self.cpus[0], "ctx": "atomic"})
            vm = list(j.live_vmalloc())
            if vm:
                c.append({"op": "vfree", "addr": hex(vm[i % len(vm)] + self.page_size)})
            for op, a in self.freed_addrs:
                if op == "vfree":
                    c.append({"op": "vfree", "addr": hex(a)})
                    break
        return c
