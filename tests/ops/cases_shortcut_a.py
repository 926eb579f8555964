from case import Case

CASES = [
    Case("stride 2, 2 + 2 zero channels", "shortcut_a", {"stride": 2, "pad_lo": 2, "pad_hi": 2}, [(4, 6, 6)]),
    Case("stride 2, odd map", "shortcut_a", {"stride": 2, "pad_lo": 1, "pad_hi": 1}, [(2, 5, 5)]),
]
