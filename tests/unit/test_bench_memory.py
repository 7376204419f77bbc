"""``smartcity bench memory``'s reading of /proc: a process tree and its memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.memory import MIB, Memory, MemoryBenchResult, memory_of, peaks, process_tree, report


def _vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_process_memory_is_what_the_kernel_reports() -> None:
    own = memory_of([os.getpid()])
    assert abs(own.rss - _vm_rss(os.getpid())) < 8 * MIB  # read a moment apart
    assert 0 < own.pss <= own.rss


def test_a_tree_holds_the_children_and_skips_what_is_named() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in process_tree(os.getpid())
        assert child.pid not in process_tree(os.getpid(), skip=("python", "python3"))
        assert memory_of(process_tree(os.getpid())).rss > memory_of([os.getpid()]).rss
    finally:
        child.kill()
        child.wait()


def test_gone_processes_count_as_nothing() -> None:
    assert memory_of([2**22 + 1]) == Memory(0.0, 0.0)


def test_the_report_gives_medians_the_reference_ratio_and_the_platform_total() -> None:
    result = MemoryBenchResult(
        runs=3,
        settle_s=12,
        devices=2162,
        reference=Memory(20 * MIB, 18 * MIB),
        at_rest={"API": [Memory(90 * MIB, 1.0), Memory(100 * MIB, 1.0), Memory(80 * MIB, 1.0)]},
        burst_messages=20_000,
        burst_peak=Memory(150 * MIB, 120 * MIB),
        burst_stored=20_000,
        at_load={"API": Memory(95 * MIB, 70 * MIB), "Mosquitto": Memory(15 * MIB, 9 * MIB)},
        at_load_busiest=Memory(105 * MIB, 75 * MIB),
        load_s=120,
        messages_at_load=4_800,
    )
    text = report(result)
    assert "API                                           90.0 MiB  (80.0 .. 100.0; 4.5x" in text
    assert "peak 150.0 MiB resident, 120.0 MiB PSS; 20,000 rows stored" in text
    assert "(40.0 rows/s stored)" in text
    assert (
        "sum of the peaks                             110.0 MiB resident,    79.0 MiB PSS" in text
    )
    assert (
        "total at the busiest moment                  105.0 MiB resident,    75.0 MiB PSS" in text
    )
    figures = result.as_dict()
    assert figures["at_load_sum_of_peaks"] == {"rss_mib": 110.0, "pss_mib": 79.0}
    assert figures["at_load_total_busiest"] == {"rss_mib": 105.0, "pss_mib": 75.0}


def test_each_part_keeps_its_peak_and_the_busiest_moment_is_the_highest_total() -> None:
    samples = [
        {"rules": Memory(70.0, 50.0), "ingest": Memory(120.0, 80.0)},  # total PSS 130
        {"rules": Memory(100.0, 60.0), "ingest": Memory(110.0, 75.0)},  # 135: the busiest
        {"rules": Memory(90.0, 55.0), "ingest": Memory(125.0, 70.0)},  # 125
    ]
    peak, busiest = peaks(samples)
    assert peak == {"rules": Memory(100.0, 60.0), "ingest": Memory(125.0, 80.0)}
    assert busiest == Memory(210.0, 135.0)
    assert peaks([]) == ({}, Memory(0.0, 0.0))
