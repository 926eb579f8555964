"""The generated program compiles with the real MAMBA compiler, small, and opens each channel once."""

import re

import pytest

from helpers import compile_program, FANNG_OPEN_ORDER

pytestmark = pytest.mark.slow


def test_seed_program_compiles_small_and_reads_each_channel_once(seed_build, tmp_path):
    out, manifest = seed_build
    program_dir = out / "program" / manifest["program"]["name"]
    summary, wall, peak_kb = compile_program(program_dir, tmp_path / "asm")
    assert summary["ok"]
    assert wall < 60 and peak_kb < 2 * 1024 * 1024, (wall, peak_kb)
    assert summary["instructions"] < 200_000  # no unrolled convolution loops
    asm = "".join(p.read_text() for p in sorted((tmp_path / "asm").glob("*.asm")))
    opened = [int(m) for m in re.findall(r"^open_channel r\d+, (\d+)", asm, flags=re.M)]
    closed = [int(m) for m in re.findall(r"^close_channel (\d+)", asm, flags=re.M)]
    executions = len(manifest["executions"])
    assert opened == FANNG_OPEN_ORDER + [90050 + n for n in range(1, executions)]
    assert sorted(closed) == sorted(opened)
    # every read_channel call reads exactly the element count of its file
    text = (program_dir / f"{manifest['program']['name']}.mpc").read_text()
    reads = {int(ch): int(n) for ch, n in re.findall(r"^read_channel\((\d+), \w+, (\d+), \d+\)", text, flags=re.M)}
    for f in manifest["files"]:
        if "channel" in f:
            assert reads[f["channel"]] == f["count"], f["path"]
    # the chunked reads of each channel add up to its count: loop chunk * (count // chunk) + rest
    for ch, count in reads.items():
        sizes = [int(n) for n in re.findall(rf"^v?private_input (?:(\d+), )?s\d+, 0, {ch} ", asm, flags=re.M) if n] or [1]
        chunk = max(sizes)
        rest = count % chunk
        assert sorted(sizes) == sorted([chunk] + ([rest] if rest else [])) or sizes == [count], (ch, sizes)
