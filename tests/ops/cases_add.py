from case import Case

CASES = [
    Case("add", "add", {}, [(2, 4, 4), (2, 4, 4)]),
    Case("add + relu", "add", {"relu": True}, [(2, 5, 3), (2, 5, 3)]),
]
