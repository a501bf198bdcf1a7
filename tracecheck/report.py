"""The checker's report as rich tables (``kmemspec check-trace``), like ``perf kmem stat``
and beyond: verdict, events by kind, violations with their lines, live state at the end,
internal fragmentation per cache and per call site, rates, what could not be checked."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tracecheck.check import RULES, CacheStats, TraceReport

MAX_VIOLATIONS_SHOWN = 50
MAX_MALFORMED_SHOWN = 20


def _pct(waste: int, total: int) -> str:
    return f"{100.0 * waste / total:.1f}%" if total else "-"


def _bytes(n: int) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:,.1f} {unit}"
    return f"{n:,} B"


def _stats_table(title: str, label: str, rows: dict[str, CacheStats], top: int) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column(label, overflow="fold")
    for c in ("allocs", "frees", "requested", "allocated", "waste", "waste %"):
        t.add_column(c, justify="right")
    items = sorted(rows.items(), key=lambda kv: (-kv[1].bytes_alloc, kv[0]))[:top]
    for name, st in items:
        w = st.bytes_alloc - st.bytes_req
        t.add_row(name, f"{st.allocs:,}", f"{st.frees:,}", _bytes(st.bytes_req),
                  _bytes(st.bytes_alloc), _bytes(w), _pct(w, st.bytes_alloc))
    return t


def render(r: TraceReport, console: Console, *, top: int = 15) -> None:
    """Print the whole report."""
    dur = r.duration
    nev = sum(r.events.values())
    verdict = ("[bold green]no violation[/]" if r.ok
               else f"[bold red]{len(r.violations)} violation(s)[/]")
    console.print(f"[bold]kmemspec check-trace[/]: {', '.join(r.sources)}")
    console.print(f"{r.lines:,} lines, {nev:,} events over {dur:.6f} s of trace time: {verdict}")

    t = Table(title="Events by kind", title_justify="left")
    t.add_column("event")
    t.add_column("count", justify="right")
    t.add_column("per second", justify="right")
    t.add_column("layout")
    for ev, n in sorted(r.events.items(), key=lambda kv: -kv[1]):
        rate = f"{n / dur:,.0f}" if dur > 0 else "-"
        t.add_row(ev, f"{n:,}", rate, r.layouts.get(ev, "not an allocator event"))
    console.print(t)

    if r.violations:
        t = Table(title="Violations", title_justify="left")
        t.add_column("rule", style="red")
        t.add_column("where")
        t.add_column("what", overflow="fold")
        for v in r.violations[:MAX_VIOLATIONS_SHOWN]:
            t.add_row(v.rule, f"{v.source}:{v.lineno}", v.message)
        console.print(t)
        if len(r.violations) > MAX_VIOLATIONS_SHOWN:
            console.print(f"... and {len(r.violations) - MAX_VIOLATIONS_SHOWN} more "
                          f"(--json lists them all)")
    if r.malformed:
        t = Table(title=f"Malformed input ({r.malformed_total} lines)", title_justify="left")
        t.add_column("where")
        t.add_column("problem", overflow="fold")
        for src, ln, msg in r.malformed[:MAX_MALFORMED_SHOWN]:
            t.add_row(f"{src}:{ln}", msg)
        console.print(t)

    t = Table(title="At the end of the trace (what the trace allocated and did not free)",
              title_justify="left")
    t.add_column("what")
    t.add_column("live", justify="right")
    t.add_column("size", justify="right")
    t.add_row("slab/kmalloc objects", f"{r.live_objects:,}", _bytes(r.live_object_bytes))
    t.add_row("page blocks", f"{r.live_page_blocks:,}", _bytes(r.live_pages * 4096))
    t.add_row("vmap areas", f"{r.live_vmalloc:,}", _bytes(r.live_vmalloc_bytes))
    console.print(t)

    c = r.counters
    allocs = r.events.get("kmalloc", 0) + r.events.get("kmem_cache_alloc", 0)
    frees = r.events.get("kfree", 0) + r.events.get("kmem_cache_free", 0)
    t = Table(title="Totals", title_justify="left")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("object allocations / frees", f"{allocs:,} / {frees:,}")
    if dur > 0:
        t.add_row("object allocations / frees per second",
                  f"{allocs / dur:,.0f} / {frees / dur:,.0f}")
        pa, pf = r.events.get("mm_page_alloc", 0), r.events.get("mm_page_free", 0)
        t.add_row("page allocations / frees per second", f"{pa / dur:,.0f} / {pf / dur:,.0f}")
    req = sum(s.bytes_req for s in r.caches.values())
    alc = sum(s.bytes_alloc for s in r.caches.values())
    t.add_row("bytes requested / allocated (internal fragmentation)",
              f"{_bytes(req)} / {_bytes(alc)} ({_pct(alc - req, alc)})")
    t.add_row("frees of things allocated before the trace (unknown)", f"{r.unknown_frees:,}")
    t.add_row("failed allocations (objects / pages)",
              f"{c['failed_object_allocs']:,} / {c['failed_page_allocs']:,}")
    t.add_row("kfree(NULL)", f"{c['null_frees']:,}")
    if r.nodes_requested:
        t.add_row("allocations naming a node (node=)",
                  ", ".join(f"node {n}: {k:,}" for n, k in sorted(r.nodes_requested.items())))
    if r.cross_node:
        cross = sum(n for k, n in r.cross_node.items() if k.split("->")[0] != k.split("->")[1])
        t.add_row("node-bound requests served from another node (requested->page's node)",
                  f"{cross:,}: " + ", ".join(f"{k}: {n:,}"
                                             for k, n in sorted(r.cross_node.items())))
    if r.page_orders:
        t.add_row("page allocations by order",
                  ", ".join(f"{o}: {k:,}" for o, k in sorted(r.page_orders.items())))
    base = "unknown" if r.page_offset is None else f"{r.page_offset:#x} ({r.page_offset_how})"
    t.add_row("direct-map base", base)
    t.add_row("pointers", "hashed" if r.hashed_pointers else "real (no_hash_pointers)")
    console.print(t)

    if r.caches:
        console.print(_stats_table("Caches (bytes requested vs allocated)", "cache",
                                   r.caches, top))
    if r.call_sites:
        console.print(_stats_table("Busiest call sites", "call site", r.call_sites, top))

    t = Table(title="Rules", title_justify="left")
    t.add_column("rule")
    t.add_column("checked", justify="right")
    t.add_column("violations", justify="right")
    t.add_column("meaning")
    vc: dict[str, int] = {}
    for v in r.violations:
        vc[v.rule] = vc.get(v.rule, 0) + 1
    for rule, meaning in RULES.items():
        n = r.rules_checked.get(rule, 0)
        t.add_row(rule, f"{n:,}", str(vc.get(rule, 0)), meaning)
    console.print(t)
    if r.not_checked:
        console.print("[bold]Not checked[/]")
        for s in r.not_checked:
            console.print(f"  - {s}", highlight=False)
    if r.notes:
        console.print("[bold]Notes[/]")
        for s in r.notes:
            console.print(f"  - {s}", highlight=False)
