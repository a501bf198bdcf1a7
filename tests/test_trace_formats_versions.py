"""The kmem and vmalloc trace events of Linux 6.1, 6.6, 6.12 and 6.18 as each kernel's source
prints them, against tracecheck/formats.py and the trace checker.

The strings below are the TP_printk format strings (and the DEFINE_EVENT class each event
takes its format from), copied from the sources read for this test:

- 6.1: ``include/trace/events/kmem.h`` of Debian's linux-source-6.1 6.1.192-3; no
  ``include/trace/events/vmalloc.h`` in 6.1.
- 6.6: ``include/trace/events/kmem.h`` and ``vmalloc.h`` of Linux 6.6.47 (git blobs 58688768ef0f
  and ad4e02191f35; 6.2.1's are the same two blobs, so 6.2 already has the vmalloc events).
- 6.12: ``kmem.h`` and ``vmalloc.h`` of Debian's linux-source-6.12 6.12.117 (vmalloc.h: blob
  ad4e02191f35 again).
- 6.18: ``kmem.h`` of Linux 6.18.0 (blob 7f93e754da5c, also in 6.18.2 and 6.18.13 trees;
  6.18.19+ differ only in rss_stat's TP_fast_assign) and ``vmalloc.h`` (blob ad4e02191f35).

What differs: the eleven allocator events print the same text in 6.1, 6.6 and 6.12; 6.18's
``kmem_cache_alloc`` adds ``name=%s`` after ``ptr=``. Besides them kmem.h has ``rss_stat``
(all four), ``mm_alloc_contig_migrate_range_info`` (6.12 only: added in 6.10, gone by 6.18)
and 6.18's ``mm_setup_per_zone_wmarks``, ``mm_setup_per_zone_lowmem_reserve`` and
``mm_calculate_totalreserve_pages``: not allocator events, so counted and named, not checked.
The gfp flag names differ too (include/trace/events/mmflags.h): 6.1 has ``__GFP_ATOMIC``;
6.6 and 6.12 print table A; 6.18 table B (single bits in bit order).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tracecheck.check import check_trace
from tracecheck.formats import BUILTIN, UNTIL, KernelVersionError, builtin_formats, load_formats

ALLOC_ONLY = "call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s node=%d accounted=%s"
COMMON: dict[str, str] = {  # kmem.h, the same in 6.1.192, 6.6.47, 6.12.117 and 6.18.0
    "kmalloc": ALLOC_ONLY,
    "kfree": "call_site=%pS ptr=%p",
    "kmem_cache_free": "call_site=%pS ptr=%p name=%s",
    "mm_page_free": "page=%p pfn=0x%lx order=%d",
    "mm_page_free_batched": "page=%p pfn=0x%lx order=0",
    "mm_page_alloc": "page=%p pfn=0x%lx order=%d migratetype=%d gfp_flags=%s",
    # DEFINE_EVENT(mm_page, mm_page_alloc_zone_locked): the class mm_page's format
    "mm_page_alloc_zone_locked": "page=%p pfn=0x%lx order=%u migratetype=%d percpu_refill=%d",
    "mm_page_pcpu_drain": "page=%p pfn=0x%lx order=%d migratetype=%d",
    "mm_page_alloc_extfrag": "page=%p pfn=0x%lx alloc_order=%d fallback_order=%d "
                             "pageblock_order=%d alloc_migratetype=%d fallback_migratetype=%d "
                             "fragmenting=%d change_ownership=%d",
    "rss_stat": "mm_id=%u curr=%d type=%s size=%ldB",
}
VMALLOC: dict[str, str] = {  # vmalloc.h, one file from 6.2.1 to 6.18.0
    "alloc_vmap_area": "va_start: %lu size=%lu align=%lu vstart=0x%lx vend=0x%lx failed=%d",
    "purge_vmap_area_lazy": "start=0x%lx end=0x%lx num_purged=%u",
    "free_vmap_area_noflush": "va_start=0x%lx nr_lazy=%lu nr_lazy_max=%lu",
}
SOURCE: dict[str, dict[str, str]] = {
    "6.1": COMMON | {"kmem_cache_alloc": ALLOC_ONLY},
    "6.6": COMMON | {"kmem_cache_alloc": ALLOC_ONLY} | VMALLOC,
    "6.12": COMMON | {"kmem_cache_alloc": ALLOC_ONLY} | VMALLOC | {
        "mm_alloc_contig_migrate_range_info": "start=0x%lx end=0x%lx migratetype=%d "
                                              "nr_migrated=%lu nr_reclaimed=%lu nr_mapped=%lu"},
    "6.18": COMMON | VMALLOC | {
        "kmem_cache_alloc": "call_site=%pS ptr=%p name=%s bytes_req=%zu bytes_alloc=%zu "
                            "gfp_flags=%s node=%d accounted=%s",
        "mm_setup_per_zone_wmarks": "node_id=%d zone name=%s watermark min=%lu low=%lu "
                                    "high=%lu promo=%lu",
        "mm_setup_per_zone_lowmem_reserve": "node_id=%d zone name=%s upper_zone name=%s "
                                            "lowmem_reserve_pages=%ld",
        "mm_calculate_totalreserve_pages": "totalreserve_pages=%lu"},
}
NOT_ALLOCATOR = {"rss_stat", "mm_alloc_contig_migrate_range_info", "mm_setup_per_zone_wmarks",
                 "mm_setup_per_zone_lowmem_reserve", "mm_calculate_totalreserve_pages"}
# GFP_KERNEL|__GFP_ZERO|__GFP_NOWARN as each kernel's name table prints it (mmflags.h):
# table A (6.1, 6.6, 6.12) names __GFP_NOWARN before __GFP_ZERO, table B (6.18) in bit order
GFP = {"6.1": "GFP_KERNEL|__GFP_NOWARN|__GFP_ZERO", "6.6": "GFP_KERNEL|__GFP_NOWARN|__GFP_ZERO",
       "6.12": "GFP_KERNEL|__GFP_NOWARN|__GFP_ZERO", "6.18": "GFP_KERNEL|__GFP_ZERO|__GFP_NOWARN"}
PAGE, PFN, BASE = 0xFFFFEA0000000000, 0x12340, 0xFFFF888000000000


def args(event: str, version: str) -> tuple[object, ...]:
    """The TP_printk arguments of one event, in order: one coherent story (an order-2 block,
    a slab object and a kmalloc object inside it, their frees, a vmap area), so a correct
    checker finds nothing wrong."""
    obj = BASE + (PFN << 12)
    page = f"{PAGE + PFN * 64:016x}"
    cache = ("filp",) if event == "kmem_cache_alloc" and version == "6.18" else ()
    return {
        "mm_page_alloc": (page, PFN, 2, 0, GFP[version]),
        "kmem_cache_alloc": ("alloc_empty_file+0x4e/0x100", f"{obj:016x}", *cache, 184, 192,
                             "GFP_KERNEL", -1, "true"),
        "kmalloc": ("alloc_bprm+0x46/0x1c0", f"{obj + 512:016x}", 416, 512, GFP[version], -1,
                    "false"),
        "kfree": ("free_bprm+0x9a/0xc0", f"{obj + 512:016x}"),
        "kmem_cache_free": ("fput+0x1f/0x60", f"{obj:016x}", "filp"),
        "mm_page_free": (page, PFN, 2),
        "mm_page_free_batched": (f"{PAGE + 0x500 * 64:016x}", 0x500),
        "mm_page_alloc_zone_locked": (f"{PAGE + 0x600 * 64:016x}", 0x600, 0, 0, 1),
        "mm_page_pcpu_drain": (f"{PAGE + 0x600 * 64:016x}", 0x600, 0, 0),
        "mm_page_alloc_extfrag": (f"{PAGE + 0x800 * 64:016x}", 0x800, 0, 9, 9, 0, 1, 0, 0),
        "rss_stat": (3086220619, 1, "MM_ANONPAGES", 4096),
        "alloc_vmap_area": (0xFFFFC90000010000, 5 * 4096, 16384, 0xFFFFC90000000000,
                            0xFFFFE8FFFFFFFFFF, 0),
        "free_vmap_area_noflush": (0xFFFFC90000010000, 5, 16384),
        "purge_vmap_area_lazy": (0xFFFFC90000010000, 0xFFFFC90000015000, 1),
        "mm_alloc_contig_migrate_range_info": (0x100000, 0x100200, 1, 512, 0, 0),
        "mm_setup_per_zone_wmarks": (0, "DMA32", 1024, 1280, 1536, 1792),
        "mm_setup_per_zone_lowmem_reserve": (0, "DMA", "DMA32", 1972),
        "mm_calculate_totalreserve_pages": (5000,),
    }[event]


def render(fmt: str, values: tuple[object, ...]) -> str:
    """printk's output for this format: each conversion (%pS, %p, %zu, %lu, %u, %ld, %lx,
    %d, %s) replaced by its value, the text around it kept."""
    py = re.sub(r"%(?:pS|p|s)", "%s", fmt)
    py = re.sub(r"%(?:zu|lu|ld|u|d)", "%d", py)
    py = py.replace("%lx", "%x")
    return py % values


ORDER = ("mm_page_alloc", "kmem_cache_alloc", "kmalloc", "kfree", "kmem_cache_free",
         "mm_page_free", "mm_page_alloc_zone_locked", "mm_page_pcpu_drain",
         "mm_page_free_batched", "mm_page_alloc_extfrag", "rss_stat", "alloc_vmap_area",
         "free_vmap_area_noflush", "purge_vmap_area_lazy", "mm_alloc_contig_migrate_range_info",
         "mm_setup_per_zone_wmarks", "mm_setup_per_zone_lowmem_reserve",
         "mm_calculate_totalreserve_pages")


def trace(version: str) -> str:
    """One ftrace line per event of ``version``, 10 ms apart, in the kernel's exact text."""
    lines = ["# tracer: nop"]
    events = [e for e in ORDER if e in SOURCE[version]]
    assert set(events) == set(SOURCE[version])
    for n, ev in enumerate(events):
        text = render(SOURCE[version][ev], args(ev, version))
        lines.append(f"              sh-180     [001] .....    {6.9 + n / 100:9.6f}: {ev}: {text}")
    return "\n".join(lines) + "\n"


def format_files(version: str) -> str:
    """The events' format files as the capture tool concatenates them (only what the checker
    reads: name and print fmt)."""
    return "".join(f'name: {ev}\nID: {n}\nformat:\nprint fmt: "{fmt}", REC->x\n\n'
                   for n, (ev, fmt) in enumerate(SOURCE[version].items(), 1))


@pytest.mark.parametrize("version", SOURCE)
def test_builtin_table_is_the_source(version: str) -> None:
    """formats.py holds, for every allocator event of the version, its source's format, and
    no event the version does not have."""
    want = {ev: f for ev, f in SOURCE[version].items() if ev not in NOT_ALLOCATOR}
    assert builtin_formats(version) == want


def test_the_versions_differ_where_the_sources_do() -> None:
    assert builtin_formats("6.6") == builtin_formats("6.12")
    assert builtin_formats("6.1").items() <= builtin_formats("6.6").items()
    assert set(builtin_formats("6.6")) - set(builtin_formats("6.1")) == set(VMALLOC)
    diff = {ev for ev in builtin_formats("6.18") if builtin_formats("6.18")[ev]
            != builtin_formats("6.12").get(ev)}
    assert diff == {"kmem_cache_alloc"}
    assert "kmalloc_node" in builtin_formats("6.0") and "kmalloc_node" not in builtin_formats("6.1")
    assert set(UNTIL) <= set(BUILTIN)


@pytest.mark.parametrize("with_formats", [False, True], ids=["builtin", "format-files"])
@pytest.mark.parametrize("version", SOURCE)
def test_one_line_per_event_parses_clean(version: str, with_formats: bool,
                                         tmp_path: Path) -> None:
    text = trace(version)
    fmts = None
    if with_formats:
        f = tmp_path / "kmem_formats"
        f.write_text(format_files(version))
        assert set(load_formats(str(f)).templates) == set(SOURCE[version])
        fmts = str(f)
    r = check_trace(text=text, formats_dir=fmts)
    assert r.violations == [] and r.malformed == []
    assert dict(r.events) == dict.fromkeys(SOURCE[version], 1)
    # the allocator events were judged, the others only counted
    assert r.rules_checked["kmalloc.size_class"] == 1
    assert r.rules_checked["object.overlap"] == 2 and r.rules_checked["page.align"] == 1
    assert r.rules_checked["sleep.atomic"] == 3
    assert r.rules_checked["vmalloc.overlap"] == (1 if "alloc_vmap_area" in SOURCE[version]
                                                  else 0)
    named = {m.group(1) for n in r.notes if (m := re.match(r"event '(\w+)'", n))}
    assert named == NOT_ALLOCATOR & set(SOURCE[version])
    assert r.unknown_frees == 0
    assert not any("gfp flag names unknown" in n for n in r.notes)
    if not with_formats:
        want = "Linux 6.18+ (built-in)" if version == "6.18" else "Linux 6.1+ (built-in)"
        assert r.layouts["kmem_cache_alloc"] == want


def test_6_18_cache_name_is_read() -> None:
    """With 6.18's name= the cache of a kmem_cache_alloc is known at the allocation (before,
    only its kmem_cache_free names it)."""
    r = check_trace(text=trace("6.18"))
    assert any(k.startswith("filp") for k in r.caches), r.caches
    old = check_trace(text=trace("6.12"))
    assert "filp [184/192]" in old.caches, old.caches


def test_a_wrong_line_in_each_version_is_caught() -> None:
    """The same lines with kmalloc's bytes_alloc one class too small: the rule fires in every
    version's layout (so the clean runs above are not clean because nothing was read)."""
    for version in SOURCE:
        bad = trace(version).replace("bytes_req=416 bytes_alloc=512", "bytes_req=416 "
                                     "bytes_alloc=448")
        r = check_trace(text=bad)
        assert [v.rule for v in r.violations] == ["kmalloc.size_class"], version


@pytest.mark.parametrize("bad", ["", "abc", "6.x", "6..1", "-6.1", " 6.1"])
def test_a_version_that_is_not_numbers_is_refused(bad: str) -> None:
    with pytest.raises(KernelVersionError, match="numbers separated by dots"):
        builtin_formats(bad)
