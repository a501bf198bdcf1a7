"""Tracepoint layouts: which field is the n-th space-separated token of an event's text, and
in which base its value is printed.

Two sources of layouts:

* the built-in TP_printk strings of the kernels checked, read from the source of each version:
  ``include/trace/events/kmem.h`` of Linux 6.1.192 and 6.12.117 (Debian's linux-source),
  6.6.47 (the same file as 6.2.1's) and 6.18 (v6.18.0: ``kmem_cache_alloc`` prints ``name=``
  after ``ptr=``); ``include/trace/events/vmalloc.h``, first in 6.2 (6.1 has none) and the
  same file in 6.2.1, 6.6.47, 6.12.117 and 6.18.0. The eleven allocator events print the same
  text in 6.1, 6.6 and 6.12; tests/test_trace_formats_versions.py holds every version's
  strings and checks this table against them. 6.0 and older ``*_node`` events come from
  ``../shared/reference/linux-mm-facts.md`` §7.3 (no source read);
* the ``format`` files of a running kernel (``/sys/kernel/tracing/events/kmem/*/format``, a
  directory of them, or the single concatenated file the capture tool writes): their
  ``print fmt`` gives the printed keys in order, so a kernel that adds or reorders fields
  still parses.

Either way the text itself is ``key=value`` tokens, so a line is also parsed by the keys it
shows when its token count matches no known layout (a call site of a module prints
``func+0x1/0x2 [mod]``: one token more).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from spec.errors import KmemError

# Built-in print formats, by event, newest first: (first kernel, TP_printk format string).
BUILTIN: dict[str, tuple[tuple[str, str], ...]] = {
    "kmalloc": (
        ("6.1", "call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s node=%d "
                "accounted=%s"),
        ("6.0", "call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s accounted=%s"),
        ("5.12", "call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s"),
    ),
    "kmem_cache_alloc": (
        ("6.18", "call_site=%pS ptr=%p name=%s bytes_req=%zu bytes_alloc=%zu gfp_flags=%s "
                 "node=%d accounted=%s"),
        ("6.1", "call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s node=%d "
                "accounted=%s"),
        ("6.0", "call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s accounted=%s"),
        ("5.12", "call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s"),
    ),
    "kmalloc_node": (
        ("6.0", "call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s node=%d "
                "accounted=%s"),
        ("5.12", "call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s node=%d"),
    ),
    "kmem_cache_alloc_node": (
        ("6.0", "call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s node=%d "
                "accounted=%s"),
        ("5.12", "call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s node=%d"),
    ),
    "kfree": (("5.12", "call_site=%pS ptr=%p"),),
    "kmem_cache_free": (("5.12", "call_site=%pS ptr=%p name=%s"),),
    "mm_page_alloc": (("5.12", "page=%p pfn=0x%lx order=%d migratetype=%d gfp_flags=%s"),),
    "mm_page_free": (("5.12", "page=%p pfn=0x%lx order=%d"),),
    "mm_page_free_batched": (("5.12", "page=%p pfn=0x%lx order=0"),),
    "mm_page_alloc_zone_locked": (
        ("5.12", "page=%p pfn=0x%lx order=%u migratetype=%d percpu_refill=%d"),),
    "mm_page_pcpu_drain": (("5.12", "page=%p pfn=0x%lx order=%d migratetype=%d"),),
    "mm_page_alloc_extfrag": (
        ("5.12", "page=%p pfn=0x%lx alloc_order=%d fallback_order=%d pageblock_order=%d "
                 "alloc_migratetype=%d fallback_migratetype=%d fragmenting=%d "
                 "change_ownership=%d"),),
    "alloc_vmap_area": (
        ("6.2", "va_start: %lu size=%lu align=%lu vstart=0x%lx vend=0x%lx failed=%d"),),
    "free_vmap_area_noflush": (("6.2", "va_start=0x%lx nr_lazy=%lu nr_lazy_max=%lu"),),
    "purge_vmap_area_lazy": (("6.2", "start=0x%lx end=0x%lx num_purged=%u"),),
}

# Events a kernel no longer has, by the last kernel that had them: 6.1 folded the *_node
# events into kmalloc / kmem_cache_alloc, which print node= (include/trace/events/kmem.h).
UNTIL: dict[str, str] = {"kmalloc_node": "6.0", "kmem_cache_alloc_node": "6.0"}


class KernelVersionError(KmemError, ValueError):
    """A kernel version that is not dotted decimal numbers ("6.12", "6.1.192")."""


def _version(v: str) -> tuple[int, ...]:
    parts = v.split(".") if isinstance(v, str) else []
    if not parts or not all(p.isdecimal() for p in parts):
        raise KernelVersionError(f"kernel version must be numbers separated by dots, like "
                                 f"'6.12', got {v!r}")
    return tuple(int(x) for x in parts)


def builtin_formats(version: str) -> dict[str, str]:
    """The print format of every built-in event as Linux ``version`` ("6.6") prints it, by
    this table: the newest variant whose first kernel is not after ``version``; events the
    kernel does not have (before their first or after their UNTIL kernel) are left out."""
    v = _version(version)
    out: dict[str, str] = {}
    for ev, variants in BUILTIN.items():
        if ev in UNTIL and v > _version(UNTIL[ev]):
            continue
        fmt = next((f for first, f in variants if _version(first) <= v), None)
        if fmt is not None:
            out[ev] = fmt
    return out


# Fields printed in hex without a 0x prefix (%p): everything else is decimal unless the
# value itself starts with 0x.
HEX_KEYS = frozenset({"ptr", "page"})


@dataclass(frozen=True)
class Template:
    """One print format: the printed key of each token ('' for a literal token) and the base
    of its value (16, 10, or 0 for a string)."""

    event: str
    keys: tuple[str, ...]
    bases: tuple[int, ...]
    version: str = ""

    @property
    def ntokens(self) -> int:
        return len(self.keys)


def _conv_base(conv: str) -> int:
    c = conv.rstrip("B")
    if c.endswith("s"):
        return 0
    if c.startswith("0x") or c.endswith("x") or c.endswith("p") or c.endswith("pS"):
        return 16
    return 10


def template_from_fmt(event: str, fmt: str, version: str = "") -> Template:
    """The layout of a TP_printk format string: ``va_start: %lu`` (a key with a colon, then
    the value as its own token) and ``order=0`` (a constant) are handled."""
    keys: list[str] = []
    bases: list[int] = []
    pending_key = ""
    for tok in fmt.split():
        if "=" in tok:
            k, _, conv = tok.partition("=")
            keys.append(k)
            bases.append(_conv_base(conv) if "%" in conv else 10)
            pending_key = ""
        elif tok.endswith(":") and "%" not in tok:
            pending_key = tok[:-1]
            keys.append("")
            bases.append(0)
        elif "%" in tok:
            keys.append(pending_key or f"arg{len(keys)}")
            bases.append(_conv_base(tok))
            pending_key = ""
        else:
            keys.append("")
            bases.append(0)
    return Template(event, tuple(keys), tuple(bases), version)


def builtin_templates() -> dict[str, list[Template]]:
    """Every built-in layout, by event name."""
    return {ev: [template_from_fmt(ev, fmt, ver) for ver, fmt in variants]
            for ev, variants in BUILTIN.items()}


_NAME = re.compile(r"^name:\s*(\S+)", re.M)
_FMT = re.compile(r'^print fmt:\s*"((?:[^"\\]|\\.)*)"', re.M)


@dataclass
class FormatSet:
    """Templates read from format files, and where they came from."""

    templates: dict[str, Template] = field(default_factory=dict)
    files: int = 0
    problems: list[str] = field(default_factory=list)


def _parse_format_text(text: str, into: FormatSet, origin: str) -> None:
    # A concatenated file has one "name:" ... "print fmt:" block per event.
    blocks = re.split(r"(?m)^(?=name:\s)", text)
    for block in blocks:
        nm = _NAME.search(block)
        if not nm:
            continue
        fm = _FMT.search(block)
        if not fm:
            into.problems.append(f"{origin}: event {nm.group(1)} has no 'print fmt' line")
            continue
        into.templates[nm.group(1)] = template_from_fmt(nm.group(1), fm.group(1), "format file")
        into.files += 1


def load_formats(path: str) -> FormatSet:
    """Templates from a ``format`` file, a file of several concatenated, or a directory tree
    of them (``events/kmem`` or ``events``). Raises OSError when nothing is readable."""
    fs = FormatSet()
    p = Path(path)
    if p.is_dir():
        found = False
        for root, _dirs, files in os.walk(p):
            for fn in sorted(files):
                if fn == "format" or fn.endswith("_formats") or fn == "kmem_formats":
                    found = True
                    fp = Path(root) / fn
                    _parse_format_text(fp.read_text(errors="replace"), fs, str(fp))
        if not found:
            raise OSError(f"{path}: no 'format' files below this directory")
    else:
        _parse_format_text(p.read_text(errors="replace"), fs, str(p))
    if not fs.templates:
        raise OSError(f"{path}: no tracepoint format ('name:' and 'print fmt:') found")
    return fs
