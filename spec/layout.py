"""x86-64 4-level paging layout constants of Linux 6.12 without KASLR
(arch/x86/include/asm/page_64_types.h, pgtable_64_types.h, Documentation/arch/x86/x86_64/mm.rst).

KASLR (CONFIG_RANDOMIZE_MEMORY) moves these bases at boot in 1 GiB steps; the model uses the
documented unrandomised bases, as a kernel booted with ``nokaslr`` has.
"""

from __future__ import annotations

from typing import Final

PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT
PAGE_OFFSET: Final = 0xFFFF888000000000  # __PAGE_OFFSET_BASE_L4: start of the direct map
DIRECT_MAP_SIZE: Final = 64 << 40  # 64 TiB, up to 0xffffc87fffffffff
MAX_PHYSMEM_BITS: Final = 46  # arch/x86/include/asm/sparsemem.h, 4-level paging
VMALLOC_START: Final = 0xFFFFC90000000000
VMALLOC_SIZE: Final = 32 << 40
VMALLOC_END: Final = VMALLOC_START + VMALLOC_SIZE  # exclusive; the kernel's VMALLOC_END is -1
NUMA_NO_NODE: Final = -1
