"""Page migration (mm/migrate.c, Linux 6.12.117): move a movable page to another pfn.

Only pages on the LRU (anonymous user pages here) or with movable_ops can be isolated for
migration (mm/compaction.c isolate_migratepages_block, mm/migrate.c isolate_movable_page);
everything else the kernel allocated, such as a driver's GFP_USER buffer, page tables, slab
and vmalloc pages, is unmovable: :func:`migrate_page` refuses it with MigrationError and
changes nothing. A page with references beyond its mappings (a pin, get_page) fails with
-EAGAIN, as folio_migrate_mapping() does when folio_ref_count() differs from the expected
count.

Migrating is migrate_pages() -> migrate_folio_unmap() (try_to_migrate: every PTE that maps
the old page, found through the reverse map, becomes a migration entry) -> move_to_new_folio()
(the contents are copied, the references move) -> remove_migration_ptes() (each entry now maps
the new page, with the same protection) -> the old page is freed. Cost: O(number of mappings).
"""

from __future__ import annotations

from impl.memory import UserMemory
from impl.page_alloc import OWNER_PAGES
from impl.pgtable import PTE_PFN_MASK
from spec.errors import MigrationError
from spec.gfp import __GFP_THISNODE, GFP_HIGHUSER_MOVABLE

# alloc_migration_target(): a movable page on the source page's node
GFP_MIGRATE_TARGET = GFP_HIGHUSER_MOVABLE | __GFP_THISNODE


def migration_refusal(ps: UserMemory, pfn: int) -> str | None:
    """Why ``pfn`` cannot be isolated for migration now, or None if it can
    (isolate_migratepages_block's checks: PageLRU or __PageMovable, and its racy pin check
    ``folio_ref_count(folio) - 1 > folio_mapcount(folio)`` for anonymous pages)."""
    pa = ps.pa
    if type(pfn) is not int:
        return f"pfn {pfn!r} is not an integer"
    rec = pa.allocated.get(pfn)
    if rec is None:
        return f"pfn {pfn:#x} is not an allocated page (free, reserved, or a tail page)"
    if pfn not in ps.anon:
        what = ("a shared buffer page (GFP_USER)" if pfn in ps.buffer_page
                else f"a page of the {rec[2]}" if rec[2] != OWNER_PAGES
                else "a kernel page from alloc_pages")
        return (f"pfn {pfn:#x} is unmovable: {what}, neither on the LRU nor with movable_ops "
                "(-EBUSY)")
    if pa.page_count(pfn) != ps.mapcount(pfn):
        return (f"pfn {pfn:#x} is pinned: page_count {pa.page_count(pfn)} but mapcount "
                f"{ps.mapcount(pfn)} (-EAGAIN)")
    return None


def migrate_page(ps: UserMemory, pfn: int, *, target: int | None = None, cpu: int = 0) -> int:
    """Migrate the movable page ``pfn``: to ``target`` (a page compaction_alloc() already took
    for it) or to a new page on its node (alloc_migration_target). Returns the new pfn; every
    user address that mapped ``pfn`` maps it now, ``pfn`` is free. MigrationError (state
    unchanged) for an unmovable or pinned page, or when no target page can be had."""
    why = migration_refusal(ps, pfn)
    if why is not None:
        raise MigrationError(f"migrate_pages: {why}")
    pa = ps.pa
    if target is None:
        z = pa.zone_of_pfn(pfn)
        assert z is not None
        new = pa.alloc_pages_node(z.nid, GFP_MIGRATE_TARGET, 0, cpu=cpu)
        if new is None:
            raise MigrationError(f"migrate_pages: no page on node {z.nid} to move {pfn:#x} to "
                                 "(-ENOMEM)")
    else:
        new = target
    # try_to_migrate + remove_migration_ptes: every mapping, same protection, new pfn
    users = list(ps.rmap.pop(pfn))
    for pid, va in users:
        mm = ps.mms[pid]
        prot = ps.pgd(mm).pte_of(va) & ~PTE_PFN_MASK
        ps._set_prot(mm, va, new, prot)
    ps.rmap[new] = dict.fromkeys(users)
    # folio_migrate_mapping: the references (one per mapping) move to the new folio
    extra = pa.refs.pop(pfn, 0)
    if extra:
        pa.refs[new] = extra
    if pfn in ps.contents:
        ps.contents[new] = ps.contents.pop(pfn)  # folio_migrate_copy
    ps.anon.discard(pfn)
    ps.anon.add(new)
    pa.free_pages_pfn(pfn, 0)  # the old folio's last reference
    ps.stats["migrated"] += 1
    return new
