from case import Case

CASES = [Case("3 x 4 x 4", "input", {}, [(3, 4, 4)])]
