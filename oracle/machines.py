"""The machines the oracle describes to a subject in ``hello``: presets and machine files.

``small`` (the default) is sized so that a run of a few seconds drives every zone to its min
watermark: two nodes, 4096 pages (16 MiB) in DMA, DMA32 and Normal zones, non-zero
``lowmem_reserve`` (so a zone serving a request for a higher zone keeps extra pages, as
``__zone_watermark_ok()`` in mm/page_alloc.c demands), and a DMA/DMA32 boundary at pfn 400,
which is not aligned to 2^max_order, so blocks at that edge are smaller (the protocol's "a
zone's blocks are aligned on the absolute pfn"). ``tiny`` and ``default`` are
:meth:`impl.machine.MachineConfig.tiny` and :meth:`~impl.machine.MachineConfig.default` as a
``hello``; any other name is a machine file (machines/*.json), through
:meth:`~impl.machine.MachineConfig.to_hello`, which gives each zone its kernel-computed ``min``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from impl.machine import MachineConfig
from spec.errors import MachineError
from spec.layout import PAGE_SIZE

PRESETS = ("tiny", "small", "default")

SMALL_HELLO: dict[str, Any] = {
    "op": "hello", "protocol": 1, "page_size": PAGE_SIZE, "max_order": 8,
    "page_offset": "0xffff888000000000",
    "vmalloc_start": "0xffffc90000000000", "vmalloc_end": "0xffffe90000000000",
    "nodes": [
        {"nid": 0, "cpus": [0, 1],
         "zones": [{"zone": "DMA", "start_pfn": 0, "pages": 400, "min": 8,
                    "lowmem_reserve": [0, 24, 48]},
                   {"zone": "DMA32", "start_pfn": 400, "pages": 1648, "min": 16,
                    "lowmem_reserve": [0, 0, 32]}]},
        {"nid": 1, "cpus": [2, 3],
         "zones": [{"zone": "Normal", "start_pfn": 2048, "pages": 2048, "min": 32,
                    "lowmem_reserve": [0, 0, 0]}]}],
    "distance": [[10, 20], [20, 10]],
}

# The protocol document's example machine (../shared/design/oracle-protocol.md, "Start and end"),
# as its first request: the machine the conformance tests of the reference subject speak to.
EXAMPLE_HELLO: dict[str, Any] = {
    "op": "hello", "seq": 1, "protocol": 1, "page_size": PAGE_SIZE, "max_order": 10,
    "page_offset": "0xffff888000000000",
    "vmalloc_start": "0xffffc90000000000", "vmalloc_end": "0xffffe90000000000",
    "nodes": [
        {"nid": 0, "cpus": [0],
         "zones": [{"zone": "DMA", "start_pfn": 0, "pages": 4096, "min": 8,
                    "lowmem_reserve": [0, 0, 0]},
                   {"zone": "DMA32", "start_pfn": 4096, "pages": 12288, "min": 32,
                    "lowmem_reserve": [0, 0, 0]}]},
        {"nid": 1, "cpus": [1],
         "zones": [{"zone": "Normal", "start_pfn": 16384, "pages": 16384, "min": 64,
                    "lowmem_reserve": [0, 0, 0]}]}],
    "distance": [[10, 20], [20, 10]],
}


def hello_of(machine: str | dict[str, Any] | MachineConfig) -> dict[str, Any]:
    """The ``hello`` request (without ``seq``) for a preset name, a machine file path, a
    hello-shaped dict, or a :class:`MachineConfig`. Raises :class:`MachineError` for an
    unknown name or a machine the model could not boot (checked with ``from_hello``)."""
    if isinstance(machine, MachineConfig):
        hello = machine.to_hello()
    elif isinstance(machine, dict):
        hello = {k: v for k, v in copy.deepcopy(machine).items() if k != "seq"}
        hello["op"] = "hello"
        hello.setdefault("protocol", 1)
        hello.setdefault("page_size", PAGE_SIZE)
    elif machine == "small":
        hello = copy.deepcopy(SMALL_HELLO)
    elif machine == "tiny":
        hello = MachineConfig.tiny().to_hello()
    elif machine == "default":
        hello = MachineConfig.default().to_hello()
    elif Path(machine).exists():
        hello = MachineConfig.from_file(machine).to_hello()
    else:
        raise MachineError(f"unknown machine {machine!r}: use {', '.join(PRESETS)} or a "
                           "machine file (machines/*.json)")
    if hello.get("protocol") != 1 or type(hello.get("protocol")) is not int:
        raise MachineError(f"the oracle speaks subject protocol version 1; this hello says "
                           f"protocol {hello.get('protocol')!r}")
    MachineConfig.from_hello(hello)  # the same validation a subject's model applies
    return hello


def machine_name(machine: str | dict[str, Any] | MachineConfig) -> str:
    """A short name for reports and replay headers."""
    if isinstance(machine, MachineConfig):
        return machine.name
    if isinstance(machine, dict):
        return str(machine.get("name", "custom"))
    return machine
