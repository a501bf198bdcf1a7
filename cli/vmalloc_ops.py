"""The scenario runner's vmalloc operations (``vmalloc``, ``vzalloc``, ``vfree``,
``vmalloc_to_pfn``, ``purge_vmap``), kept out of cli/scenario.py so that file only wires them
in. Each returns the runner's (text, record, is_null, handle) tuple; bad input raises the
model's KmemError, which the runner prints as the step's ``error:``."""

from __future__ import annotations

from typing import Any

from cli.text import plural
from impl.vmalloc import DEFAULT_CALLER, Vmalloc
from spec.gfp import __GFP_ZERO

VM_OPS = ("vmalloc", "vzalloc", "vfree", "vmalloc_to_pfn", "purge_vmap")
_GFP_ZERO = __GFP_ZERO


def execute_vm(v: Vmalloc, op: str, args: dict[str, Any]
               ) -> tuple[str, dict[str, Any], bool, int | None]:
    """Run one vmalloc op: (result text, record, NULL allocation?, value for ``as=``)."""
    if op in ("vmalloc", "vzalloc"):
        gfp = args["gfp"] | (_GFP_ZERO if op == "vzalloc" else 0)
        addr = v.vmalloc_node_gfp(args["size"], gfp, args["nid"], caller=DEFAULT_CALLER,
                                  cpu=args["cpu"], ctx=args["ctx"])
        if addr is None:
            return "NULL", {"addr": None}, True, None
        vm = v.busy[addr]
        nodes: dict[int, int] = {}
        for p in vm.pages:
            nid = v.nid_of(p)
            nodes[nid] = nodes.get(nid, 0) + 1
        shown = ", ".join(hex(p) for p in vm.pages[:4]) + (", ..." if vm.nr_pages > 4 else "")
        per_node = " ".join(f"N{n}={c}" for n, c in sorted(nodes.items()))
        pages = plural(vm.nr_pages, "page")
        text = (f"addr {addr:#x}, {pages} (pfns {shown}; {per_node}), area "
                f"{vm.addr:#x}-{vm.addr + vm.size:#x} with its guard page")
        return text, {"addr": hex(addr), "pfns": list(vm.pages), "size": vm.size}, False, addr
    if op == "vfree":
        v.vfree(args["addr"], cpu=args["cpu"], ctx=args["ctx"])
        lazy = f"; {plural(v.vmap_lazy_nr, 'lazy page')}" if v.vmap_lazy_nr else ""
        return f"ok{lazy}", {"ok": True}, False, None
    if op == "vmalloc_to_pfn":
        pfn = v.vmalloc_to_pfn(args["addr"])
        if pfn is None:
            return "no page (not mapped)", {"pfn": None}, True, None
        return f"pfn {pfn:#x} ({pfn}) node {v.nid_of(pfn)}", {"pfn": pfn}, False, pfn
    n = v.purge_vmap_area_lazy()
    return f"{plural(n, 'lazily freed area')} purged", {"purged": n}, False, None
