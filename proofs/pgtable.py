"""Z3 obligations for x86-64 4-level page tables and the kernel address layout, on the
implementation's own kit functions (impl/pgtable.py, spec/layout.py, impl/direct_map.py)
called with 64-bit bit-vectors. Each has vacuity witnesses and a seeded bug it refutes
(:data:`PGTABLE_MUTANTS`: the wrong helper passed as a parameter, proofs/mutants.py style).

* ``pgtable.index_split``: for every canonical address, (pgd_index, pud_index, pmd_index,
  pte_index, page_offset_of) is in range and va_of recombines it into the address; distinct
  canonical addresses give distinct tuples; and every in-range tuple is the split of the
  canonical address va_of builds: a bijection between canonical addresses and tuples.
* ``pgtable.pte_slots_distinct``: for every page-aligned start and every two distinct pages
  i != j < 2^35 of an area whose pages are canonical, the pages' PTE slots
  (pgd, pud, pmd, pte indices: the table path and the index) differ.
* ``layout.disjoint``: the direct map [PAGE_OFFSET, +64 TiB) and the vmalloc range never
  overlap (for the default base and for every 1 GiB-aligned base KASLR could choose below
  the vmalloc range); is_vmalloc_addr is exactly [VMALLOC_START, VMALLOC_END - 1);
  virt_addr_valid implies a direct-map address, never a vmalloc or user one, whose page
  exists; page_to_virt/virt_to_page round trip on every pfn below 2^34.
* ``pgtable.init`` / ``pgtable.map_induction`` / ``pgtable.unmap_induction``: a new tree
  satisfies the tree invariants of spec/pgtable_state.py (root, upper entries, leaf
  entries, tree shape), and map_page/unmap_page keep them from any state that satisfies
  them; unmap returns the mapped pfn and leaves ``va`` unmapped.
* ``pgtable.walk_frame`` (``make verify-long``, about 5-10 s of CPU): the operations do what
  they say: after map the walk of ``va`` finds the new PTE, and map and unmap change no other
  canonical page's walk result.

What the induction is about, exactly: the state is a symbolic tree of unbounded size (Z3
arrays: table pfn -> index -> entry, the owned-table set and each table's level). The
transition is built from the same kit functions PageTable runs (level_index, walk_step,
entry_present, entry_table_pfn, pte_none, pte_args_ok, pfn_pte, pte_present, pte_pfn); the
Python control flow around them (allocate a table only when the entry is not present, raise
on a bad guard) and the table allocation (a fresh page, not a table of the tree and mapped by
no PTE, zeroed: __GFP_ZERO) are restated here. The invariants are universally quantified over
slots; the step is proved for two arbitrary slots with the pre-state invariants instantiated
at those slots and at the slots the two walks visit (sound: the quantified pre-state invariant
implies every instance), so the proofs stay quantifier-free. Hypotheses of the step, each
an obligation of another part of the model: the pfn mapped is not a table page of the tree
(callers map pages they allocated), and the pages the allocator hands out for tables are
neither tables of the tree nor mapped by a PTE (they are free). Array keys are 40-bit pfns and
9-bit indices (entries hold 40-bit pfns, PTE_PFN_MASK; pgtable.index_split proves indices are
below 512). map_page is split into 8 cases by which upper entries its walk finds present
(each case a straight-line transition, no array-valued If). Not covered: PageTable's cache
of PTE tables (``_pt_cache``), which PageTable.violations() checks concretely against the
walk; map_pages/unmap_range (loops of the same steps, tested); free_tables.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import z3

from impl.direct_map import page_to_virt, virt_to_page
from impl.pgtable import (
    entry_present,
    entry_table_pfn,
    level_index,
    page_offset_of,
    pfn_pte,
    pgd_index,
    pmd_index,
    pte_args_ok,
    pte_index,
    pte_none,
    pte_pfn,
    pte_present,
    ptep_get_and_clear,
    pud_index,
    va_of,
    walk_step,
)
from proofs.core import DEFAULT_TIMEOUT_MS, ProofResult, combine, prove
from spec.layout import (
    DIRECT_MAP_SIZE,
    KERNEL_HALF_START,
    PAGE_OFFSET,
    PAGE_SHIFT,
    PAGE_SIZE,
    PUD_SIZE,
    VMALLOC_END,
    VMALLOC_START,
    direct_map_contains,
    is_canonical,
    is_user_addr,
    is_vmalloc_addr,
    virt_addr_valid,
)
from spec.logic import Bits, lshr
from spec.pgtable_state import children_distinct, entry_pfn, leaf_entry_ok, upper_entry_ok

Fn = Callable[..., Any]
W = 64


def _bv(name: str) -> Any:
    return z3.BitVec(name, W)


# --- the index split --------------------------------------------------------------------------

def index_split(pgd: Fn = pgd_index, pud: Fn = pud_index, pmd: Fn = pmd_index,
                pte: Fn = pte_index, off: Fn = page_offset_of, combine_va: Fn = va_of,
                timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """The split of a canonical address into PGD, PUD, PMD, PTE indices and page offset is a
    bijection onto in-range tuples (va_of is its inverse)."""
    va, vb = _bv("va"), _bv("vb")

    def split(v: Any) -> tuple[Any, ...]:
        return (pgd(v), pud(v), pmd(v), pte(v), off(v))

    sa, sb = split(va), split(vb)
    in_range = z3.And(*(z3.ULT(x, 512) for x in sa[:4]), z3.ULT(sa[4], PAGE_SIZE))
    parts = [prove("split", [is_canonical(va), is_canonical(vb)], {
        "indices in range": in_range,
        "va_of recombines the split": combine_va(*sa) == va,
        "distinct addresses, distinct tuples": z3.Implies(
            va != vb, z3.Or(*(x != y for x, y in zip(sa, sb, strict=True)))),
    }, timeout_ms, witnesses={"a kernel address": lshr(va, 63) == 1,
                              "a user address": z3.ULT(va, 1 << 47),
                              "addresses differing in one PMD index": z3.And(
                                  va != vb, sa[3] == sb[3], sa[4] == sb[4])})]
    t = [_bv(f"t{k}") for k in range(5)]
    v = combine_va(*t)
    parts.append(prove("onto", [*(z3.ULT(x, 512) for x in t[:4]), z3.ULT(t[4], PAGE_SIZE)], {
        "va_of builds a canonical address": is_canonical(v),
        "whose split is the tuple": z3.And(*(x == y for x, y in zip(split(v), t, strict=True))),
    }, timeout_ms, witnesses={"the top kernel page": t[0] == 511}))
    return combine("pgtable.index_split", parts)


AREA_BITS = 35
"""Areas of up to 2^35 pages: the whole 128 TiB user half (the vmalloc range has 2^33)."""


def pte_slots_distinct(pgd: Fn = pgd_index, pud: Fn = pud_index, pmd: Fn = pmd_index,
                       pte: Fn = pte_index, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """Distinct pages of a page-aligned area of canonical pages use distinct PTE slots
    (distinct table path (pgd, pud, pmd) or distinct index in the PTE table)."""
    start, i, j, n = _bv("start"), _bv("i"), _bv("j"), _bv("n")
    a, b = start + i * PAGE_SIZE, start + j * PAGE_SIZE
    hyps = [page_offset_of(start) == 0, z3.ULE(n, 1 << AREA_BITS), z3.ULT(i, n), z3.ULT(j, n),
            i != j, is_canonical(a), is_canonical(b)]

    def slot(v: Any) -> tuple[Any, ...]:
        return (pgd(v), pud(v), pmd(v), pte(v))

    goal = {"distinct PTE slots": z3.Or(*(x != y for x, y in
                                          zip(slot(a), slot(b), strict=True)))}
    return prove("pgtable.pte_slots_distinct", hyps, goal, timeout_ms, witnesses={
        "pages 512 apart (same pte index)": j == i + 512,
        "a vmalloc area": z3.And(start == VMALLOC_START, n == 16)})


# --- the layout -------------------------------------------------------------------------------

MAX_PFN_BITS = 34  # 64 TiB of 4 KiB pages: the whole direct map


def layout_disjoint(direct_map: Fn = direct_map_contains, vmalloc: Fn = is_vmalloc_addr,
                    valid: Fn = virt_addr_valid, to_virt: Fn = page_to_virt,
                    to_page: Fn = virt_to_page,
                    timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """The direct map and the vmalloc range never overlap; is_vmalloc_addr and
    virt_addr_valid agree with the ranges; page_to_virt and virt_to_page are inverse."""
    va, pfn, max_pfn, base = _bv("va"), _bv("pfn"), _bv("max_pfn"), _bv("page_offset")
    parts = [prove("default base", [z3.ULE(max_pfn, 1 << MAX_PFN_BITS)], {
        "the ranges are disjoint": z3.Not(z3.And(direct_map(va), vmalloc(va))),
        "is_vmalloc_addr is [VMALLOC_START, VMALLOC_END - 1)": vmalloc(va) == z3.And(
            z3.UGE(va, VMALLOC_START), z3.ULT(va, VMALLOC_END - 1)),
        "the direct map is [PAGE_OFFSET, PAGE_OFFSET + 64 TiB)": direct_map(va) == z3.And(
            z3.UGE(va, PAGE_OFFSET), z3.ULT(va, PAGE_OFFSET + DIRECT_MAP_SIZE)),
        "both are canonical kernel addresses": z3.Implies(
            z3.Or(direct_map(va), vmalloc(va)),
            z3.And(is_canonical(va), z3.Not(is_user_addr(va)), z3.UGE(va, KERNEL_HALF_START))),
        "virt_addr_valid: a direct-map address of an existing page": z3.Implies(
            valid(va, max_pfn), z3.And(direct_map(va), z3.Not(vmalloc(va)),
                                       z3.ULT(to_page(va), max_pfn))),
        "every existing page's address is valid": z3.Implies(
            z3.ULT(pfn, max_pfn), valid(to_virt(pfn), max_pfn)),
        "virt_to_page(page_to_virt(pfn)) == pfn": z3.Implies(
            z3.ULT(pfn, 1 << MAX_PFN_BITS), to_page(to_virt(pfn)) == pfn),
    }, timeout_ms, witnesses={"a vmalloc address": vmalloc(va),
                              "a valid address": valid(va, max_pfn)})]
    # any 1 GiB-aligned direct-map base in the kernel half that ends below VMALLOC_START
    parts.append(prove("any base below vmalloc", [
        base & (PUD_SIZE - 1) == 0, z3.UGE(base, KERNEL_HALF_START),
        z3.ULE(base, VMALLOC_START - DIRECT_MAP_SIZE)], {
        "the ranges are disjoint": z3.Not(z3.And(direct_map(va, base), vmalloc(va))),
        "virt_addr_valid is never a vmalloc address": z3.Implies(
            valid(va, max_pfn, base), z3.Not(vmalloc(va))),
    }, timeout_ms, witnesses={"the default base": base == PAGE_OFFSET}))
    return combine("layout.disjoint", parts)


# --- the induction over a symbolic tree -----------------------------------------------------------

class SymTree:
    """A symbolic page-table tree: entries E[_k(table)][_x(index)], the owned tables and their
    levels (the fields tables/levels of impl.pgtable.PageTable), and the root."""

    def __init__(self, tag: str, root: Any) -> None:
        self.E = z3.Array(f"E_{tag}", KEY, z3.ArraySort(IDX, z3.BitVecSort(W)))
        self.owned = z3.Array(f"owned_{tag}", KEY, z3.BoolSort())
        self.level = z3.Array(f"level_{tag}", KEY, LEVEL)
        self.root = root

    def copy(self, entries: Any, owned: Any, level: Any) -> SymTree:
        t = SymTree.__new__(SymTree)
        t.E, t.owned, t.level, t.root = entries, owned, level, self.root
        return t


Slot = tuple[Any, Any]
KEY = z3.BitVecSort(40)  # a table's pfn: entries hold 40-bit pfns (PTE_PFN_MASK)
IDX = z3.BitVecSort(9)  # an index in a table: pgtable.index_split proves indices < 512
LEVEL = z3.BitVecSort(8)


def _k(t: Any) -> Any:
    """A table pfn (64-bit, as entry_table_pfn returns it) as an array key."""
    return z3.Extract(39, 0, t)


def _x(i: Any) -> Any:
    """A table index (64-bit, as level_index returns it) as an array key."""
    return z3.Extract(8, 0, i)


def slot_ok(st: SymTree, s: Slot) -> Any:
    """pgtable.upper_entry / pgtable.leaf_entry at slot ``s`` of an owned table."""
    t, i = s
    e, lv = st.E[_k(t)][_x(i)], st.level[_k(t)]
    child = entry_pfn(e)
    return z3.Implies(st.owned[_k(t)], z3.And(
        z3.ULE(lv, 3),
        z3.Implies(z3.ULT(lv, 3), upper_entry_ok(e, lv, st.owned[_k(child)], st.level[_k(child)])),
        z3.Implies(lv == 3, leaf_entry_ok(e, st.owned[_k(child)]))))


def pair_ok(st: SymTree, s1: Slot, s2: Slot) -> Any:
    """pgtable.tree for two slots of owned upper tables."""
    (t1, i1), (t2, i2) = s1, s2
    return z3.Implies(z3.And(st.owned[_k(t1)], st.owned[_k(t2)], z3.ULT(st.level[_k(t1)], 3),
                             z3.ULT(st.level[_k(t2)], 3)),
                      children_distinct(st.E[_k(t1)][_x(i1)], st.E[_k(t2)][_x(i2)],
                                        z3.And(_k(t1) == _k(t2), _x(i1) == _x(i2))))


def root_ok(st: SymTree) -> Any:
    """pgtable.root."""
    return z3.And(st.owned[_k(st.root)], st.level[_k(st.root)] == 0)


def instances(st: SymTree, slots: Sequence[Slot],
              pairs: Sequence[tuple[Slot, Slot]] | None = None) -> list[Any]:
    """The invariant instantiated at ``slots`` and at ``pairs`` (default: every pair of
    ``slots``)."""
    if pairs is None:
        pairs = [(a, b) for k, a in enumerate(slots) for b in slots[k + 1:]]
    return [root_ok(st), *(slot_ok(st, s) for s in slots), *(pair_ok(st, a, b) for a, b in pairs)]


def walk_slots(st: SymTree, va: Any, index: Fn) -> list[Slot]:
    """The four slots a walk of ``va`` reads (meaningful as long as entries are present)."""
    t, out = st.root, []
    for level in range(4):
        i = index(va, level)
        out.append((t, i))
        t = entry_table_pfn(st.E[_k(t)][_x(i)])
    return out


def sym_lookup(st: SymTree, va: Any, index: Fn) -> Any:
    """PageTable.lookup: the PTE if every level is present and the PTE is, else 0."""
    t, ok = st.root, z3.BoolVal(True)
    for level in range(3):
        e = st.E[_k(t)][_x(index(va, level))]
        ok = z3.And(ok, entry_present(e))
        t = entry_table_pfn(e)
    leaf = st.E[_k(t)][_x(index(va, 3))]
    return z3.If(z3.And(ok, pte_present(leaf)), leaf, 0)


ZERO_TABLE = z3.K(IDX, z3.BitVecVal(0, W))


def sym_map(pre: SymTree, va: Any, pfn: Any, prot: Any, fresh: Sequence[Any], index: Fn,
            step: Fn, make_pte: Fn, present: Sequence[bool],
            zeroed: bool = True) -> tuple[Any, SymTree]:
    """PageTable.map_page in the case where the walk finds level k's entry present iff
    ``present[k]``: (guard, post-state). ``fresh[k]`` is the page the allocator hands out
    for a missing level-k entry (_alloc_table: owned, its level, zeroed). The cases are
    split in Python so that no array-valued If is built; the 8 cases cover every walk."""
    E, owned, level = pre.E, pre.owned, pre.level
    t = pre.root
    case = []
    for lv in range(3):
        i = index(va, lv)
        e = E[_k(t)][_x(i)]
        case.append(entry_present(e) if present[lv] else z3.Not(entry_present(e)))
        child, new_e = step(e, fresh[lv])
        if not present[lv]:
            if zeroed:
                E = z3.Store(E, _k(fresh[lv]), ZERO_TABLE)
            owned = z3.Store(owned, _k(fresh[lv]), True)
            level = z3.Store(level, _k(fresh[lv]), lv + 1)
        E = z3.Store(E, _k(t), z3.Store(E[_k(t)], _x(i), new_e))
        t = child
    i = index(va, 3)
    guard = z3.And(*case, pte_none(E[_k(t)][_x(i)]), pte_args_ok(pfn, prot))
    E = z3.Store(E, _k(t), z3.Store(E[_k(t)], _x(i), make_pte(pfn, prot)))
    return guard, pre.copy(E, owned, level)


def sym_unmap(pre: SymTree, va: Any, index: Fn,
              clear: Fn = ptep_get_and_clear) -> tuple[Any, SymTree, Any]:
    """PageTable.unmap_page: (guard, post-state, returned pfn)."""
    t, ok = pre.root, z3.BoolVal(True)
    for lv in range(3):
        e = pre.E[_k(t)][_x(index(va, lv))]
        ok = z3.And(ok, entry_present(e))
        t = entry_table_pfn(e)
    i = index(va, 3)
    leaf = pre.E[_k(t)][_x(i)]
    guard = z3.And(ok, pte_present(leaf))
    left, pfn = clear(leaf)
    return guard, pre.copy(z3.Store(pre.E, _k(t), z3.Store(pre.E[_k(t)], _x(i), left)),
                           pre.owned, pre.level), pfn


def _common(pre: SymTree, tag: str, index: Fn) -> tuple[Any, Any, Slot, Slot, list[Any]]:
    va, va2 = _bv(f"va_{tag}"), _bv(f"va2_{tag}")
    s1: Slot = (_bv(f"t1_{tag}"), _bv(f"i1_{tag}"))
    s2: Slot = (_bv(f"t2_{tag}"), _bv(f"i2_{tag}"))
    hyps = [is_canonical(va), is_canonical(va2), lshr(va, PAGE_SHIFT) != lshr(va2, PAGE_SHIFT)]
    return va, va2, s1, s2, hyps


def _post_goals(post: SymTree, s1: Slot, s2: Slot) -> dict[str, Any]:
    return {"pgtable.root": root_ok(post),
            "pgtable.upper_entry/leaf_entry at a slot": z3.And(slot_ok(post, s1),
                                                               slot_ok(post, s2)),
            "pgtable.tree at two slots": pair_ok(post, s1, s2)}


def _run(name: str, parts: Iterator[ProofResult]) -> ProofResult:
    """combine() of the parts, stopping at the first that fails (a refuted seeded bug need
    not run the remaining cases)."""
    done: list[ProofResult] = []
    for r in parts:
        done.append(r)
        if not r.ok:
            break
    return combine(name, done)


def _map_parts(index: Fn, step: Fn, make_pte: Fn, zeroed: bool, frame: bool,
               timeout_ms: int) -> Iterator[ProofResult]:
    pre = SymTree("pre", _bv("root"))
    va, va2, s1, s2, hyps = _common(pre, "m", index)
    pfn, prot = _bv("pfn"), _bv("prot")
    fresh = [_bv(f"fresh{k}") for k in range(3)]
    walk, walk2 = walk_slots(pre, va, index), walk_slots(pre, va2, index)
    # the allocator's pages: free, hence neither a table of the tree nor mapped by a PTE
    free_pages = [z3.And(z3.Not(pre.owned[_k(f)]), lshr(f, 40) == 0, f != pfn) for f in fresh]
    hyps += [*free_pages, z3.Distinct(*fresh),
             z3.Not(pre.owned[_k(pfn)])]  # the caller maps its own page, never a table page

    def unmapped(slots: Sequence[Slot]) -> list[Any]:
        return [z3.Implies(z3.And(pre.owned[_k(t)], pre.level[_k(t)] == 3,
                                  pre.E[_k(t)][_x(i)] != 0),
                           entry_pfn(pre.E[_k(t)][_x(i)]) != f)
                for (t, i) in slots for f in fresh]

    e0 = pre.E[_k(pre.root)][_x(index(va, 0))]
    inv_slots = [s1, s2, *walk]
    # the instances each step needs: the two slots checked and the slots the walks read,
    # pairs where two walks may meet (same level)
    inv_hyps = [*hyps, *instances(pre, inv_slots, [(s1, s2)]), *unmapped(inv_slots)]
    walk_hyps = [*hyps, *instances(pre, [*walk, *walk2],
                                   list(zip(walk[:3], walk2[:3], strict=True))),
                 *unmapped([*walk, *walk2])]
    yield prove("vacuity", [*inv_hyps, *walk_hyps], True, timeout_ms, witnesses={
        "a map allocating three tables": z3.Not(entry_present(e0)),
        "a map into an existing PTE table": sym_lookup(pre, va2, index) != 0,
        "va2 in the same PTE table": z3.And(*(index(va, k) == index(va2, k)
                                              for k in range(3)))})
    for case in itertools.product((False, True), repeat=3):
        guard, post = sym_map(pre, va, pfn, prot, fresh, index, step, make_pte, case, zeroed)
        tag = "".join("p" if c else "-" for c in case)
        if not frame:
            yield prove(f"invariants[{tag}]", [*inv_hyps, guard], _post_goals(post, s1, s2),
                        timeout_ms, check_vacuity=False)
            continue
        yield prove(f"walk[{tag}]", [*hyps, *instances(pre, walk, []), *unmapped(walk), guard],
                    {"the walk finds the new PTE": sym_lookup(post, va, index)
                     == pfn_pte(pfn, prot)}, timeout_ms, check_vacuity=False)
        yield prove(f"frame[{tag}]", [*walk_hyps, guard], {
            "other pages' walks unchanged": sym_lookup(post, va2, index)
            == sym_lookup(pre, va2, index)}, timeout_ms, check_vacuity=False)


def map_induction(index: Fn = level_index, step: Fn = walk_step, make_pte: Fn = pfn_pte,
                  zeroed: bool = True, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """map_page from any state satisfying the tree invariants keeps them (8 cases: which of
    the three upper entries were present)."""
    r = _run("pgtable.map_induction",
             _map_parts(index, step, make_pte, zeroed, False, timeout_ms))
    r.data["cases"] = 8
    return r


def _unmap_parts(index: Fn, frame: bool, timeout_ms: int,
                 clear: Fn = ptep_get_and_clear) -> Iterator[ProofResult]:
    pre = SymTree("pre", _bv("root"))
    va, va2, s1, s2, hyps = _common(pre, "u", index)
    walk, walk2 = walk_slots(pre, va, index), walk_slots(pre, va2, index)
    guard, post, got = sym_unmap(pre, va, index, clear)
    if frame:
        yield prove("frame", [*hyps, *instances(pre, [*walk, *walk2], list(
            zip(walk[:3], walk2[:3], strict=True))), guard], {
            "other pages' walks unchanged": sym_lookup(post, va2, index)
            == sym_lookup(pre, va2, index)}, timeout_ms, witnesses={
            "va2 still mapped in the same PTE table": z3.And(
                sym_lookup(pre, va2, index) != 0,
                *(index(va, k) == index(va2, k) for k in range(3)))})
        return
    yield prove("unmap", [*hyps, *instances(pre, [s1, s2, *walk], [(s1, s2)]), guard], {
        **_post_goals(post, s1, s2),
        "returns the mapped pfn": got == pte_pfn(sym_lookup(pre, va, index)),
        "va is unmapped": sym_lookup(post, va, index) == 0}, timeout_ms, witnesses={
        "the slot checked is the one cleared": z3.And(*(a == b for a, b in
                                                        zip(s1, walk[3], strict=True)))})


def unmap_induction(index: Fn = level_index, clear: Fn = ptep_get_and_clear,
                    timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """unmap_page from any state satisfying the tree invariants keeps them, returns the pfn
    the walk found and leaves ``va`` unmapped."""
    return _run("pgtable.unmap_induction", _unmap_parts(index, False, timeout_ms, clear))


def walk_frame(index: Fn = level_index, step: Fn = walk_step,
               timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """From any state satisfying the tree invariants, the walk of ``va`` finds the PTE
    map_page installed, and map_page and unmap_page change the walk result of no other
    canonical page (8 map cases and unmap)."""
    r = _run("pgtable.walk_frame", itertools.chain(
        _map_parts(index, step, pfn_pte, True, True, timeout_ms),
        _unmap_parts(index, True, timeout_ms)))
    r.data["cases"] = 9
    return r


def init_state(zeroed: bool = True, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """A new tree (PageTable.__init__: a zeroed root at level 0, nothing else owned)
    satisfies the invariants at every slot."""
    root = _bv("root")
    entries = z3.K(KEY, ZERO_TABLE)
    if not zeroed:  # the root's entries are whatever the page held
        entries = z3.Store(entries, _k(root), z3.Array("garbage", IDX, z3.BitVecSort(W)))
    st = SymTree("init", root).copy(
        entries, z3.Store(z3.K(KEY, z3.BoolVal(False)), _k(root), True),
        z3.Store(z3.K(KEY, z3.BitVecVal(0, 8)), _k(root), 0))
    s1, s2 = (_bv("t1"), _bv("i1")), (_bv("t2"), _bv("i2"))
    return prove("pgtable.init", [], _post_goals(st, s1, s2), timeout_ms)


# --- seeded bugs --------------------------------------------------------------------------------

def pmd_index_wrong_shift(va: Bits) -> Bits:
    """pmd_index with PUD_SHIFT's neighbour: (va >> 22) & 511, bit 21 never used."""
    return lshr(va, 22) & 511


def pte_index_8_bits(va: Bits) -> Bits:
    """pte_index masking with 255: pages 256 apart share a slot."""
    return lshr(va, PAGE_SHIFT) & 255


def virt_addr_valid_pfn_only(va: Bits, max_pfn: Bits, page_offset: Bits = PAGE_OFFSET) -> Bits:
    """virt_addr_valid trusting pfn_valid(__pa(va)) alone, without the direct-map range."""
    return z3.ULT(lshr(va - page_offset, PAGE_SHIFT), max_pfn)


def pte_clear_present_bit(pte: Bits) -> tuple[Bits, Bits]:
    """ptep_get_and_clear leaving the entry with only _PAGE_PRESENT cleared (PAGE_KERNEL's
    _PAGE_GLOBAL is _PAGE_PROTNONE: the page stays "present")."""
    return pte & ~1, pte_pfn(pte)


def level_index_wrong_pmd(va: Bits, level: int) -> Bits:
    """The walk's PMD index computed with the wrong shift (pmd_index_wrong_shift)."""
    return pmd_index_wrong_shift(va) if level == 2 else level_index(va, level)


def walk_step_not_present(entry: Bits, fresh: Bits) -> Bits:
    """pmd_populate forgetting _PAGE_PRESENT: the new entry is _PAGE_TABLE without it."""
    child, new = walk_step(entry, fresh)
    return child, z3.If(entry_present(entry), new, new & ~1)


def init_root_not_zeroed() -> ProofResult:
    """pgd_alloc without __GFP_ZERO (GFP_PGTABLE_USER minus the zeroing): the new PGD holds
    whatever the page held."""
    return init_state(zeroed=False)


PGTABLE_MUTANTS: dict[str, tuple[str, Fn, Callable[[], ProofResult]]] = {
    "mutant.pgtable_init_root_not_zeroed": (
        "pgtable.init", init_root_not_zeroed, init_root_not_zeroed),
    "mutant.pgtable_pmd_index_shift": (
        "pgtable.index_split", pmd_index_wrong_shift,
        lambda: index_split(pmd=pmd_index_wrong_shift)),
    "mutant.pgtable_pte_index_mask": (
        "pgtable.pte_slots_distinct", pte_index_8_bits,
        lambda: pte_slots_distinct(pte=pte_index_8_bits)),
    "mutant.layout_virt_addr_valid_no_range": (
        "layout.disjoint", virt_addr_valid_pfn_only,
        lambda: layout_disjoint(valid=virt_addr_valid_pfn_only)),
    "mutant.pgtable_populate_not_present": (
        "pgtable.map_induction", walk_step_not_present,
        lambda: map_induction(step=walk_step_not_present)),
    "mutant.pgtable_map_not_zeroed": (
        "pgtable.map_induction", map_induction,
        lambda: map_induction(zeroed=False)),
    "mutant.pgtable_unmap_clears_present_only": (
        "pgtable.unmap_induction", pte_clear_present_bit,
        lambda: unmap_induction(clear=pte_clear_present_bit)),
    "mutant.pgtable_walk_pmd_index_shift": (
        "pgtable.walk_frame", level_index_wrong_pmd,
        lambda: walk_frame(index=level_index_wrong_pmd)),
}
"""Seeded bugs of the page-table obligations: each must be refuted."""

OBLIGATIONS: dict[str, Callable[[], ProofResult]] = {
    "pgtable.index_split": index_split,
    "pgtable.pte_slots_distinct": pte_slots_distinct,
    "layout.disjoint": layout_disjoint,
    "pgtable.init": init_state,
    "pgtable.map_induction": map_induction,
    "pgtable.unmap_induction": unmap_induction,
}
"""The page-table obligations of ``make verify``, by row name."""

LONG_OBLIGATIONS: dict[str, Callable[[], ProofResult]] = {
    "pgtable.walk_frame": walk_frame,
}
"""Obligations for ``make verify-long`` only (about 10 s of CPU)."""
"""The page-table obligations, by ``make verify`` row name."""
