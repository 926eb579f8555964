from case import Case

CASES = [
    Case("max 2x2", "maxpool", {"kernel": 2, "stride": 2}, [(3, 6, 6)]),
    Case("max 3x3 stride 2, odd map", "maxpool", {"kernel": 3, "stride": 2}, [(2, 7, 7)]),
    Case("average 2x2", "avgpool", {"kernel": 2, "stride": 2}, [(3, 6, 6)]),
    Case("average 3x3 (rounded reciprocal)", "avgpool", {"kernel": 3, "stride": 3}, [(2, 6, 6)]),
]
