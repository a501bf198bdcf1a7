"""Pictures of a checked trace (``kmemspec check-trace --plot DIR``), drawn with matplotlib's
Agg backend:

* ``memory-map.png``: physical memory over time, one horizontal bar per page block from its
  ``mm_page_alloc`` to its ``mm_page_free`` (pfn on the y axis), slab pages (a block whose
  first object follows it on the same CPU) apart from other pages;
* ``fragmentation.png``: over time, the internal fragmentation of the live objects
  (1 - bytes requested / bytes allocated), the live object bytes, and the live pages.

The recorder keeps one entry per page block and one sample per page event, so its memory
grows with the trace (the check alone does not): plotting is opt-in.
"""

from __future__ import annotations

import os
from typing import Any

MAX_SEGMENTS = 400_000


class Recorder:
    """What the replay tells the plots (called only when plotting)."""

    def __init__(self) -> None:
        self.open: dict[int, list[Any]] = {}   # pfn -> [t_alloc, order, slab?]
        self.segments: list[tuple[float, float, int, int, bool]] = []
        self.samples: list[tuple[float, int, int, int]] = []  # ts, live req, live alloc, pages
        self.live_req = 0
        self.live_alloc = 0
        self.live_pages = 0
        self.last_ts = 0.0
        self.dropped = 0

    def page(self, ts: float, pfn: int, order: int, alloc: bool) -> None:
        self.last_ts = max(self.last_ts, ts)
        if alloc:
            self.open[pfn] = [ts, order, False]
            self.live_pages += 1 << order
        else:
            o = self.open.pop(pfn, None)
            if o is not None:
                self.live_pages -= 1 << o[1]
                if len(self.segments) < MAX_SEGMENTS:
                    self.segments.append((o[0], ts, pfn, o[1], o[2]))
                else:
                    self.dropped += 1
        self.samples.append((ts, self.live_req, self.live_alloc, self.live_pages))

    def mark_slab(self, lp: tuple[int, int, int, Any]) -> None:
        o = self.open.get(lp[0])
        if o is not None:
            o[2] = True

    def obj(self, req: int, alloc: int) -> None:
        self.live_req += req
        self.live_alloc += alloc


def write_plots(rec: Recorder, report: Any, outdir: str) -> list[str]:
    """Write the PNG files; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    os.makedirs(outdir, exist_ok=True)
    end = rec.last_ts
    segs = list(rec.segments) + [(o[0], end, pfn, o[1], o[2]) for pfn, o in rec.open.items()]
    out: list[str] = []

    fig, ax = plt.subplots(figsize=(11, 6.5), dpi=110)
    for slab, color, label in ((False, "tab:blue", "pages"), (True, "tab:orange", "slab pages")):
        lines = [[(t0, pfn + (1 << order) / 2), (max(t1, t0 + 1e-6), pfn + (1 << order) / 2)]
                 for t0, t1, pfn, order, s in segs if s == slab]
        widths = [max(0.6, min(6.0, (1 << order) / 2)) for _t0, _t1, _p, order, s in segs
                  if s == slab]
        if lines:
            ax.add_collection(LineCollection(lines, colors=color, linewidths=widths,
                                             label=f"{label} ({len(lines):,} blocks)"))
    if segs:
        ax.set_xlim(min(s[0] for s in segs), max(end, max(s[1] for s in segs)) + 1e-6)
        ax.set_ylim(min(s[2] for s in segs) - 1, max(s[2] + (1 << s[3]) for s in segs) + 1)
        ax.legend(loc="upper right")
    ax.set_xlabel("trace time (s)")
    ax.set_ylabel("pfn")
    ax.set_title("Physical memory over time: page blocks from mm_page_alloc to mm_page_free"
                 + (f" ({rec.dropped:,} blocks not drawn)" if rec.dropped else ""))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"{int(v):#x}"))
    fig.tight_layout()
    p = os.path.join(outdir, "memory-map.png")
    fig.savefig(p)
    plt.close(fig)
    out.append(p)

    fig, axes = plt.subplots(3, 1, figsize=(11, 8), dpi=110, sharex=True)
    ts = [s[0] for s in rec.samples]
    frag = [100.0 * (1 - s[1] / s[2]) if s[2] else 0.0 for s in rec.samples]
    axes[0].plot(ts, frag, color="tab:red")
    axes[0].set_ylabel("internal\nfragmentation %")
    axes[1].plot(ts, [s[2] / 1024 for s in rec.samples], label="allocated")
    axes[1].plot(ts, [s[1] / 1024 for s in rec.samples], label="requested")
    axes[1].set_ylabel("live objects\n(KiB)")
    axes[1].legend(loc="upper left")
    axes[2].plot(ts, [s[3] for s in rec.samples], color="tab:green")
    axes[2].set_ylabel("live pages\n(traced)")
    axes[2].set_xlabel("trace time (s)")
    axes[0].set_title("Fragmentation over time (objects and pages allocated during the trace)")
    fig.tight_layout()
    p = os.path.join(outdir, "fragmentation.png")
    fig.savefig(p)
    plt.close(fig)
    out.append(p)
    return out
