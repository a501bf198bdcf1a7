"""GFP flags of Linux 6.12.117: bit values, composite masks, trace notation, zone and
migratetype selection, validation, and the same answers on Z3 bit-vectors.

Expected values are copied from the facts tables (shared/reference/linux-mm-facts.md §1), not
computed from spec.gfp, so a wrong constant in the spec fails here.
"""

from __future__ import annotations

import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

import spec.gfp as g
from spec.errors import GfpError, KmemError
from spec.gfp import (
    GFP_ATOMIC,
    GFP_DMA32,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOWAIT,
    check_gfp,
    format_gfp,
    gfp_is_valid,
    gfp_migratetype,
    gfp_zone,
    gfp_zone_is_bad,
    gfpflags_allow_blocking,
    parse_gfp,
)

# §1.1: bit -> ___GFP_* name (bits 0-23 are the same in every version; bit 9 is unused)
BIT_NAMES = {
    0: "DMA", 1: "HIGHMEM", 2: "DMA32", 3: "MOVABLE", 4: "RECLAIMABLE", 5: "HIGH", 6: "IO",
    7: "FS", 8: "ZERO", 10: "DIRECT_RECLAIM", 11: "KSWAPD_RECLAIM", 12: "WRITE", 13: "NOWARN",
    14: "RETRY_MAYFAIL", 15: "NOFAIL", 16: "NORETRY", 17: "MEMALLOC", 18: "COMP",
    19: "NOMEMALLOC", 20: "HARDWALL", 21: "THISNODE", 22: "ACCOUNT", 23: "ZEROTAGS",
    24: "NO_OBJ_EXT",  # 6.10+, CONFIG_SLAB_OBJ_EXT=y, no KASAN_HW_TAGS, no LOCKDEP
}

# §1.2, column "6.3-6.16", except GFP_NOWAIT which 6.12.117 has with the 6.17 backport.
COMPOSITES = {
    "GFP_ATOMIC": 0x820,
    "GFP_KERNEL": 0xCC0,
    "GFP_KERNEL_ACCOUNT": 0x400CC0,
    "GFP_NOWAIT": 0x2800,
    "GFP_NOIO": 0xC00,
    "GFP_NOFS": 0xC40,
    "GFP_USER": 0x100CC0,
    "GFP_DMA": 0x1,
    "GFP_DMA32": 0x4,
    "GFP_HIGHUSER": 0x100CC2,
    "GFP_HIGHUSER_MOVABLE": 0x100CCA,
    "GFP_TRANSHUGE_LIGHT": 0x1C20CA,
    "GFP_TRANSHUGE": 0x1C24CA,
    "__GFP_RECLAIM": 0xC00,
    "GFP_ZONEMASK": 0xF,
    "GFP_MOVABLE_MASK": 0x18,
}

# §1.4: low 4 bits -> zone index (0 DMA, 1 DMA32, 2 Normal, 3 Movable); None = GFP_ZONE_BAD
ZONE_TABLE: dict[int, int | None] = {
    0x0: 2, 0x1: 0, 0x2: 2, 0x3: None, 0x4: 1, 0x5: None, 0x6: None, 0x7: None,
    0x8: 2, 0x9: 0, 0xA: 3, 0xB: None, 0xC: 1, 0xD: None, 0xE: None, 0xF: None,
}

# §1.8 table A (<= 6.14)
TRACE_EXAMPLES = {
    0xCC0: "GFP_KERNEL",
    0xDC0: "GFP_KERNEL|__GFP_ZERO",
    0x2DC0: "GFP_KERNEL|__GFP_NOWARN|__GFP_ZERO",
    0x40DC0: "GFP_KERNEL|__GFP_COMP|__GFP_ZERO",
    0x2820: "GFP_ATOMIC|__GFP_NOWARN",
    0x2CC2: "GFP_KERNEL|__GFP_HIGHMEM|__GFP_NOWARN",
    0x2DC2: "GFP_KERNEL|__GFP_HIGHMEM|__GFP_NOWARN|__GFP_ZERO",
    0x52CC0: "GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP",
    0xD20C0: "__GFP_IO|__GFP_FS|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC",
    0x100CC0: "GFP_USER",
    0xCC0 | 0x4: "GFP_KERNEL|GFP_DMA32",
    0: "none",
    # 6.12.117's GFP_NOWAIT already contains __GFP_NOWARN, so 0x2800 prints as one name.
    0x2800: "GFP_NOWAIT",
    # table A has no name for __GFP_NO_OBJ_EXT: it is a hex leftover
    0xCC0 | 0x1000000: "GFP_KERNEL|0x1000000",
    0x1000000: "0x1000000",
}

VALID_BITS = [1 << b for b in BIT_NAMES]


def _valid_masks() -> st.SearchStrategy[int]:
    subsets = st.sets(st.sampled_from(VALID_BITS))
    return subsets.map(lambda bs: sum(bs, 0)).filter(_is_valid)


def _is_valid(m: int) -> bool:
    try:
        check_gfp(m)
    except GfpError:
        return False
    return True


# --- bit values -------------------------------------------------------------------------------
@pytest.mark.parametrize("bit", sorted(BIT_NAMES))
def test_single_bit_values(bit: int) -> None:
    name = BIT_NAMES[bit]
    assert getattr(g, f"___GFP_{name}") == 1 << bit
    assert getattr(g, f"__GFP_{name}") == 1 << bit
    assert g.GFP_NAMES[f"__GFP_{name}"] == 1 << bit


def test_unused_and_config_dependent_bits() -> None:
    assert g.___GFP_UNUSED == 0x200
    # CONFIG_KASAN_HW_TAGS=n and CONFIG_LOCKDEP=n: the enumerators do not exist, value 0
    assert g.__GFP_SKIP_ZERO == 0
    assert g.__GFP_SKIP_KASAN == 0
    assert g.__GFP_NOLOCKDEP == 0
    assert g.__GFP_BITS_SHIFT == 25
    assert g.__GFP_BITS_MASK == 0x1FFFFFF
    assert g.GFP_VALID_MASK == 0x1FFFFFF & ~0x200
    assert sum(VALID_BITS) == g.GFP_VALID_MASK


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composite_values(name: str) -> None:
    assert getattr(g, name) == COMPOSITES[name]
    if name in g.GFP_NAMES:
        assert g.GFP_NAMES[name] == COMPOSITES[name]


def test_nowait_has_the_backported_nowarn() -> None:
    assert GFP_NOWAIT == g.__GFP_KSWAPD_RECLAIM | g.__GFP_NOWARN == 0x2800
    assert not gfpflags_allow_blocking(GFP_NOWAIT)


def test_trace_table_is_table_a_order() -> None:
    names = [n for n, _ in g.TRACE_NAME_TABLE]
    assert names[:12] == [
        "GFP_TRANSHUGE", "GFP_TRANSHUGE_LIGHT", "GFP_HIGHUSER_MOVABLE", "GFP_HIGHUSER",
        "GFP_USER", "GFP_KERNEL_ACCOUNT", "GFP_KERNEL", "GFP_NOFS", "GFP_ATOMIC", "GFP_NOIO",
        "GFP_NOWAIT", "GFP_DMA"]
    assert names[-4:] == ["__GFP_RECLAIM", "__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM",
                          "__GFP_ZEROTAGS"]
    assert "__GFP_NO_OBJ_EXT" not in names
    assert len(names) == 35


# --- format / parse ---------------------------------------------------------------------------
@pytest.mark.parametrize(("mask", "text"), sorted(TRACE_EXAMPLES.items()))
def test_format_gfp_table_a(mask: int, text: str) -> None:
    assert format_gfp(mask) == text


def test_format_gfp_named_composites() -> None:
    assert format_gfp(GFP_KERNEL | GFP_DMA32) == "GFP_KERNEL|GFP_DMA32"
    assert format_gfp(GFP_HIGHUSER_MOVABLE) == "GFP_HIGHUSER_MOVABLE"
    assert format_gfp(g.GFP_TRANSHUGE) == "GFP_TRANSHUGE"
    assert format_gfp(GFP_ATOMIC) == "GFP_ATOMIC"
    # bit 9 is unused in 6.3+: nothing names it
    assert format_gfp(0x200) == "0x200"
    assert format_gfp(GFP_KERNEL | 0x200) == "GFP_KERNEL|0x200"


@pytest.mark.parametrize(("mask", "text"), sorted(TRACE_EXAMPLES.items()))
def test_parse_gfp_examples(mask: int, text: str) -> None:
    assert parse_gfp(text) == mask


def test_parse_gfp_spellings() -> None:
    assert parse_gfp(" GFP_KERNEL | __GFP_ZERO ") == 0xDC0
    assert parse_gfp("GFP_KERNEL|0x2000") == 0x2CC0
    assert parse_gfp("GFP_KERNEL|0x2000", ignore_hex=True) == 0xCC0
    assert parse_gfp("__GFP_SKIP_KASAN|GFP_KERNEL") == 0xCC0  # a 0-valued name adds nothing
    assert parse_gfp("__GFP_DMA|__GFP_DMA32", validate=False) == 0x5


@settings(max_examples=50, deadline=None)
@given(_valid_masks())
def test_parse_format_round_trip(m: int) -> None:
    text = format_gfp(m)
    assert "|" not in text or all(t for t in text.split("|"))
    assert parse_gfp(text) == m


@settings(max_examples=50, deadline=None)
@given(_valid_masks())
def test_format_uses_each_bit_once(m: int) -> None:
    """Every printed name's mask is fully inside m and the names are disjoint (the greedy
    table walk clears what it printed)."""
    seen = 0
    for tok in format_gfp(m).split("|"):
        if tok == "none":
            assert m == 0
            continue
        bits = int(tok, 16) if tok.startswith("0x") else g.GFP_NAMES[tok]
        assert bits & m == bits
        assert bits & seen == 0
        seen |= bits
    assert seen == m


@pytest.mark.parametrize("text", [
    "", "   ", "GFP_BOGUS", "GFP_KERNEL|__GFP_ATOMIC", "gfp_kernel", "GFP_KERNEL||",
    "0xzz", "__GFP_DMA|__GFP_DMA32", "__GFP_MOVABLE|__GFP_RECLAIMABLE", "0x200",
    "GFP_KERNEL|0x2000000",
])
def test_parse_gfp_rejects(text: str) -> None:
    with pytest.raises(GfpError) as ei:
        parse_gfp(text)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg


# --- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [
    0x200, 1 << 25, 1 << 31, GFP_KERNEL | 0x200, GFP_KERNEL | (1 << 25),
])
def test_check_gfp_unknown_bits(mask: int) -> None:
    with pytest.raises(GfpError, match=f"{mask & ~g.GFP_VALID_MASK:#x}"):
        check_gfp(mask)
    assert not gfp_is_valid(mask)


@pytest.mark.parametrize("low", [b for b, z in ZONE_TABLE.items() if z is None])
def test_check_gfp_bad_zone_combinations(low: int) -> None:
    with pytest.raises(GfpError, match="zone modifiers"):
        check_gfp(GFP_KERNEL | low)
    assert not gfp_is_valid(GFP_KERNEL | low)


def test_check_gfp_dma_dma32() -> None:
    with pytest.raises(GfpError, match="GFP_DMA\\|GFP_DMA32"):
        check_gfp(g.__GFP_DMA | g.__GFP_DMA32)


def test_check_gfp_movable_and_reclaimable() -> None:
    m = GFP_KERNEL | g.__GFP_MOVABLE | g.__GFP_RECLAIMABLE
    with pytest.raises(GfpError, match="__GFP_MOVABLE and __GFP_RECLAIMABLE"):
        check_gfp(m)
    assert not gfp_is_valid(m)


@pytest.mark.parametrize("bad", [-1, True, 1.0, "GFP_KERNEL", None])
def test_check_gfp_rejects_non_integers(bad: object) -> None:
    with pytest.raises(GfpError):
        check_gfp(bad)  # type: ignore[arg-type]


def test_gfp_error_is_a_kmem_error_and_value_error() -> None:
    with pytest.raises(KmemError):
        check_gfp(0x200)
    with pytest.raises(ValueError):
        check_gfp(0x200)


@pytest.mark.parametrize(
    "mask", sorted(v for k, v in COMPOSITES.items() if k.startswith(("GFP_", "__GFP_"))
                   and not k.endswith("MASK")))
def test_composites_are_valid(mask: int) -> None:
    assert check_gfp(mask) == mask
    assert gfp_is_valid(mask)


# --- zone, migratetype, blocking --------------------------------------------------------------
@pytest.mark.parametrize("low", range(16))
def test_gfp_zone_table(low: int) -> None:
    want = ZONE_TABLE[low]
    # the high bits never affect the zone
    for high in (0, GFP_KERNEL, GFP_ATOMIC | g.__GFP_NOWARN):
        assert gfp_zone(high | low) == (g.ZONE_BAD if want is None else want)
        assert bool(gfp_zone_is_bad(high | low)) == (want is None)


def test_gfp_zone_of_common_masks() -> None:
    assert gfp_zone(GFP_KERNEL) == g.ZONE_NORMAL
    assert gfp_zone(GFP_HIGHUSER_MOVABLE) == g.ZONE_MOVABLE
    assert gfp_zone(g.GFP_HIGHUSER) == g.ZONE_NORMAL
    assert gfp_zone(g.GFP_DMA) == g.ZONE_DMA
    assert gfp_zone(GFP_DMA32 | GFP_KERNEL) == g.ZONE_DMA32
    assert gfp_zone(g.__GFP_MOVABLE | GFP_KERNEL) == g.ZONE_NORMAL


@pytest.mark.parametrize(("mask", "mt"), [
    (GFP_KERNEL, g.MIGRATE_UNMOVABLE),
    (GFP_ATOMIC, g.MIGRATE_UNMOVABLE),
    (GFP_HIGHUSER_MOVABLE, g.MIGRATE_MOVABLE),
    (GFP_KERNEL | g.__GFP_MOVABLE, g.MIGRATE_MOVABLE),
    (GFP_KERNEL | g.__GFP_RECLAIMABLE, g.MIGRATE_RECLAIMABLE),
    (g.GFP_TRANSHUGE, g.MIGRATE_MOVABLE),
    (g.__GFP_DMA | g.__GFP_MOVABLE, g.MIGRATE_MOVABLE),
])
def test_gfp_migratetype(mask: int, mt: int) -> None:
    assert gfp_migratetype(mask) == mt


def test_migratetype_constants() -> None:
    assert (g.MIGRATE_UNMOVABLE, g.MIGRATE_MOVABLE, g.MIGRATE_RECLAIMABLE) == (0, 1, 2)
    assert g.MIGRATE_PCPTYPES == g.MIGRATE_HIGHATOMIC == 3
    assert g.MIGRATETYPE_NAMES[:4] == ("Unmovable", "Movable", "Reclaimable", "HighAtomic")
    assert g.ZONE_NAMES == ("DMA", "DMA32", "Normal", "Movable")


@pytest.mark.parametrize(("mask", "blocks"), [
    (GFP_KERNEL, True), (g.GFP_NOFS, True), (g.GFP_NOIO, True), (g.GFP_USER, True),
    (GFP_HIGHUSER_MOVABLE, True), (g.GFP_TRANSHUGE, True), (g.GFP_TRANSHUGE_LIGHT, False),
    (GFP_ATOMIC, False), (GFP_NOWAIT, False), (GFP_KERNEL & ~g.__GFP_DIRECT_RECLAIM, False),
    (g.__GFP_DIRECT_RECLAIM, True), (0, False),
])
def test_gfpflags_allow_blocking(mask: int, blocks: bool) -> None:
    assert bool(gfpflags_allow_blocking(mask)) is blocks


# --- the same functions on Z3 bit-vectors -----------------------------------------------------
def _z3_int(e: z3.ExprRef) -> int:
    v = z3.simplify(e)
    assert z3.is_bv_value(v), v
    return int(v.as_signed_long())


def _z3_bool(e: z3.ExprRef) -> bool:
    v = z3.simplify(e)
    assert z3.is_true(v) or z3.is_false(v), v
    return bool(z3.is_true(v))


@pytest.mark.parametrize("low", range(16))
@pytest.mark.parametrize("high", [0, GFP_KERNEL, GFP_ATOMIC | g.__GFP_RECLAIMABLE, 0x200])
def test_z3_matches_ints(low: int, high: int) -> None:
    m = high | low
    bv = z3.BitVecVal(m, 32)  # gfp_t is a 32-bit unsigned int
    assert _z3_int(gfp_zone(bv)) == gfp_zone(m)
    assert _z3_bool(gfp_zone_is_bad(bv)) == bool(gfp_zone_is_bad(m))
    assert _z3_int(gfp_migratetype(bv)) == gfp_migratetype(m)
    assert _z3_bool(gfpflags_allow_blocking(bv)) == bool(gfpflags_allow_blocking(m))
    assert _z3_bool(gfp_is_valid(bv)) == bool(gfp_is_valid(m))


def test_z3_symbolic_zone_agrees_with_table() -> None:
    """For a symbolic mask, gfp_zone is determined by the low four bits exactly as the table
    says: the solver finds no counterexample."""
    x = z3.BitVec("gfp", 32)
    s = z3.Solver()
    cases = [z3.And(x & 0xF == low, gfp_zone(x) != (want if want is not None else -1))
             for low, want in ZONE_TABLE.items()]
    s.add(z3.Or(*cases))
    assert s.check() == z3.unsat


def test_z3_symbolic_validity_matches_check_gfp() -> None:
    """gfp_is_valid on a symbolic mask accepts exactly the masks check_gfp accepts: every
    model the solver finds for 'valid' passes check_gfp, and for 'invalid' fails it."""
    x = z3.BitVec("gfp", 32)
    for want in (True, False):
        s = z3.Solver()
        s.add(gfp_is_valid(x) == want)
        seen = 0
        while s.check() == z3.sat and seen < 20:
            m = s.model()[x].as_long()
            assert _is_valid(m) is want
            s.add(x != m)
            seen += 1
        assert seen == 20
