"""spec/layout.py and impl/pgtable.py's index kit on concrete integers, against independent
restatements (the Z3 obligations of proofs/pgtable.py prove them on bit-vectors; this checks
the int path the model runs, including ints outside [0, 2^64))."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from impl.direct_map import page_to_virt, virt_to_page
from impl.pgtable import page_offset_of, pgd_index, pmd_index, pte_index, pud_index, va_of
from spec.layout import (
    DIRECT_MAP_SIZE,
    KERNEL_VMALLOC_END,
    PAGE_OFFSET,
    TASK_SIZE_MAX,
    VMALLOC_START,
    direct_map_contains,
    in_range,
    is_canonical,
    is_user_addr,
    is_vmalloc_addr,
    virt_addr_valid,
)

U64 = st.integers(0, (1 << 64) - 1)
NEAR = st.sampled_from([0, 1 << 47, (1 << 47) - 1, PAGE_OFFSET, VMALLOC_START,
                        KERNEL_VMALLOC_END, TASK_SIZE_MAX, PAGE_OFFSET + DIRECT_MAP_SIZE,
                        (1 << 64) - 1]).flatmap(lambda b: st.integers(b - 4096, b + 4096))
ADDRS = st.one_of(U64, NEAR, st.integers(-(1 << 65), 1 << 66))


@settings(max_examples=400, deadline=None, derandomize=True)
@given(ADDRS)
def test_predicates_match_their_definitions(va: int) -> None:
    word = 0 <= va < 1 << 64
    assert is_canonical(va) == (word and (va >> 47 in (0, (1 << 17) - 1)))
    assert is_user_addr(va) == (0 <= va < TASK_SIZE_MAX)
    assert is_vmalloc_addr(va) == (VMALLOC_START <= va < KERNEL_VMALLOC_END)
    assert direct_map_contains(va) == (PAGE_OFFSET <= va < PAGE_OFFSET + DIRECT_MAP_SIZE)
    assert virt_addr_valid(va, 1000) == (PAGE_OFFSET <= va < PAGE_OFFSET + 1000 * 4096)
    assert not (direct_map_contains(va) and is_vmalloc_addr(va))


@settings(max_examples=400, deadline=None, derandomize=True)
@given(U64)
def test_split_of_canonical_addresses(va: int) -> None:
    parts = (pgd_index(va), pud_index(va), pmd_index(va), pte_index(va), page_offset_of(va))
    assert parts == ((va >> 39) & 511, (va >> 30) & 511, (va >> 21) & 511, (va >> 12) & 511,
                     va & 4095)
    assert (va_of(*parts) == va) == is_canonical(va)


@given(st.integers(0, (1 << 34) - 1))
def test_page_virt_round_trip(pfn: int) -> None:
    assert virt_to_page(page_to_virt(pfn)) == pfn
    assert direct_map_contains(page_to_virt(pfn))


def test_in_range_wraps_modulo_2_64() -> None:
    assert in_range(5, (1 << 64) - 3, 10)  # a range that wraps past 2^64 - 1
    assert not in_range(7, (1 << 64) - 3, 10)
