"""Print kmem/vmalloc trace events exactly as Linux prints them (the TP_printk formats of
include/trace/events/kmem.h and vmalloc.h, 6.1 - 6.17; ``name=`` in kmem_cache_alloc for
6.18+), and generate long realistic traces by driving the model (impl/page_alloc.py +
impl/slab_common.py): the benchmark's input and the tests' synthetic lines.

The line prefix is ftrace's ``"%16s-%-7d [%03d] %s %5lu.%06lu: "`` (kernel/trace/
trace_output.c, irq-info on); ``trace_cmd=True`` prints trace-cmd report's prefix instead.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

from spec.gfp import GFP_ATOMIC, GFP_KERNEL, GFP_KERNEL_ACCOUNT, format_gfp, gfp_migratetype

HEADER = """# tracer: nop
#
# entries-in-buffer/entries-written: {n}/{n}   #P:{cpus}
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
"""


def prefix(comm: str, pid: int, cpu: int, flags: str, ts_us: int, *,
           trace_cmd: bool = False) -> str:
    """The text before the event name."""
    if trace_cmd:
        return f"{comm:>16}-{pid:<5} [{cpu:03d}] {ts_us // 1_000_000:5d}.{ts_us % 1_000_000:06d}: "
    return (f"{comm:>16}-{pid:<7} [{cpu:03d}] {flags} "
            f"{ts_us // 1_000_000:5d}.{ts_us % 1_000_000:06d}: ")


def gfp_text(gfp: int) -> str:
    return format_gfp(gfp) if gfp else "none"


def kmalloc(site: str, ptr: int, req: int, alloc: int, gfp: int, node: int = -1) -> str:
    return (f"kmalloc: call_site={site} ptr={ptr:016x} bytes_req={req} bytes_alloc={alloc} "
            f"gfp_flags={gfp_text(gfp)} node={node} "
            f"accounted={'true' if gfp & 0x400000 else 'false'}")


def kmem_cache_alloc(site: str, ptr: int, req: int, alloc: int, gfp: int, node: int = -1,
                     accounted: bool = False, name: str | None = None) -> str:
    nm = f" name={name}" if name is not None else ""
    return (f"kmem_cache_alloc: call_site={site} ptr={ptr:016x}{nm} bytes_req={req} "
            f"bytes_alloc={alloc} gfp_flags={gfp_text(gfp)} node={node} "
            f"accounted={'true' if accounted else 'false'}")


def kfree(site: str, ptr: int) -> str:
    return f"kfree: call_site={site} ptr={ptr:016x}"


def kmem_cache_free(site: str, ptr: int, name: str) -> str:
    return f"kmem_cache_free: call_site={site} ptr={ptr:016x} name={name}"


def _page(pfn: int) -> int:
    return 0xFFFFEA0000000000 + pfn * 64


def mm_page_alloc(pfn: int, order: int, gfp: int, migratetype: int | None = None) -> str:
    mt = gfp_migratetype(gfp) if migratetype is None else migratetype
    return (f"mm_page_alloc: page={_page(pfn):016x} pfn={pfn:#x} order={order} "
            f"migratetype={mt} gfp_flags={gfp_text(gfp)}")


def mm_page_free(pfn: int, order: int) -> str:
    return f"mm_page_free: page={_page(pfn):016x} pfn={pfn:#x} order={order}"


def mm_page_free_batched(pfn: int) -> str:
    return f"mm_page_free_batched: page={_page(pfn):016x} pfn={pfn:#x} order=0"


def alloc_vmap_area(start: int, size: int, align: int = 1, failed: int = 0) -> str:
    return (f"alloc_vmap_area: va_start: {start} size={size} align={align} "
            f"vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed={failed}")


def free_vmap_area_noflush(start: int, nr_lazy: int = 0) -> str:
    return f"free_vmap_area_noflush: va_start={start:#x} nr_lazy={nr_lazy} nr_lazy_max=32768"


_SLAB_EFFECT = re.compile(r"new slab pfn (0x[0-9a-f]+) order (\d+)")
_SLAB_FREE = re.compile(r"slab pfn (0x[0-9a-f]+) order (\d+)")
SITES = ("alloc_inode+0x2c/0xb0", "__d_alloc+0x31/0x1f0", "getname_flags+0x4a/0x1e0",
         "kmalloc_reserve+0x5d/0xf0", "seq_open+0x22/0x70", "load_elf_phdrs+0x48/0xb0",
         "alloc_pipe_info+0x9a/0x1d0", "kernfs_fop_open+0x104/0x3a0")
CACHES = (("dentry_like", 192), ("inode_like", 600), ("filp_like", 256), ("vma_like", 176))


def generate(n_events: int, *, seed: int = 1, cpus: int = 4, live: int = 4000,
             trace_cmd: bool = False) -> Iterator[str]:
    """Lines of a trace of about ``n_events`` events made by the model: kmalloc/kfree of random
    sizes (1% on the large path, as in the real captures), kmem_cache_alloc/free of four
    caches, alloc_pages of orders 0-3, with the slab pages the model allocates, from ``cpus``
    CPUs, keeping about ``live`` objects and blocks live (so memory stays flat however long
    the trace is)."""
    from impl.machine import MachineConfig
    from impl.page_alloc import PageAllocator
    from impl.slab_common import SlabAllocator

    rng = random.Random(seed)
    pa = PageAllocator(MachineConfig.default())
    sa = SlabAllocator(pa)
    caches = [sa.kmem_cache_create(n, sz, 0, 0) for n, sz in CACHES]
    objs: list[tuple[int, int, str]] = []   # (addr, cache index or -1 for kmalloc, site)
    blocks: list[tuple[int, int]] = []
    ts = 10_000_000
    yield HEADER.format(n=n_events, cpus=cpus)
    emitted = 0
    sizes = [8, 24, 40, 64, 72, 100, 128, 184, 200, 256, 500, 700, 1024, 1500, 3000, 4096,
             6000]
    large_sizes = [9000, 20000]  # the page-allocator path: about 1% of kmallocs, as captured
    while emitted < n_events:
        cpu = rng.randrange(cpus)
        ts += rng.randrange(1, 4)
        softirq = rng.random() < 0.05
        flags = "..s1." if softirq else "....."
        gfp = GFP_ATOMIC if softirq else (GFP_KERNEL_ACCOUNT if rng.random() < 0.2
                                          else GFP_KERNEL)
        pre = prefix("worker", 100 + cpu, cpu, flags, ts, trace_cmd=trace_cmd)
        mark = len(pa.effects)
        out: list[str] = []
        r = rng.random()
        if r < 0.08:  # pages
            if len(blocks) > live // 8 or (blocks and rng.random() < 0.5):
                pfn, order = blocks.pop(rng.randrange(len(blocks)))
                pa.free_pages_pfn(pfn, order)
                out.append(mm_page_free(pfn, order))
                if order == 0:
                    out.append(mm_page_free_batched(pfn))
            else:
                order = rng.choice((0, 0, 0, 1, 2, 3))
                got = pa.alloc_pages_node(-1, gfp, order, cpu=cpu)
                if got is not None:
                    blocks.append((got, order))
                    out.append(mm_page_alloc(got, order, gfp))
        elif len(objs) > live or (objs and rng.random() < 0.48):
            addr, ci, site = objs.pop(rng.randrange(len(objs)))
            large = sa.large.get(addr)
            if ci < 0:
                sa.kfree(addr, cpu=cpu)
                out.append(kfree(site, addr))
                if large is not None:
                    out.append(mm_page_free(large[0], large[1]))
            else:
                sa.kmem_cache_free(caches[ci], addr, cpu=cpu)
                out.append(kmem_cache_free(site, addr, caches[ci].name))
        else:
            site = rng.choice(SITES)
            if rng.random() < 0.5:
                size = rng.choice(large_sizes) if rng.random() < 0.01 else rng.choice(sizes)
                kaddr = sa.kmalloc(size, gfp, cpu=cpu)
                if kaddr is not None:
                    addr = kaddr
                    large = sa.large.get(addr)
                    if large is not None:
                        out.append(mm_page_alloc(large[0], large[1], gfp | 0x40000))
                        alloc = 4096 << large[1]
                    else:
                        alloc = sa.kmalloc_slab(size, gfp).size
                    out.append(kmalloc(site, addr, size, alloc, gfp))
                    objs.append((addr, -1, site))
            else:
                ci = rng.randrange(len(caches))
                s = caches[ci]
                caddr = sa.kmem_cache_alloc(s, gfp, cpu=cpu)
                if caddr is not None:
                    addr = caddr
                    out.append(kmem_cache_alloc(site, addr, s.object_size, s.size, gfp,
                                                accounted=bool(gfp & 0x400000)))
                    objs.append((addr, ci, site))
        for eff in pa.effects[mark:]:
            if eff.kind == "slab_alloc":
                m = _SLAB_EFFECT.search(eff.detail)
                if m:
                    out.insert(0, mm_page_alloc(int(m.group(1), 16), int(m.group(2)),
                                                gfp | 0x52000))
            elif eff.kind == "slab_free":
                m = _SLAB_FREE.search(eff.detail)
                if m:
                    out.append(mm_page_free(int(m.group(1), 16), int(m.group(2))))
        del pa.effects[:]
        for ev in out:
            yield pre + ev + "\n"
            emitted += 1
