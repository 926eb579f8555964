from case import Case

CASES = [
    Case("global average 4x4", "global_avgpool", {}, [(3, 4, 4)]),
    Case("global average 3x3 (rounded reciprocal)", "global_avgpool", {}, [(3, 3, 3)]),
    Case("global max 5x5 (odd tree)", "global_maxpool", {}, [(2, 5, 5)]),
]
