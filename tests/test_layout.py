"""The test tree itself: pytest imports test files by basename (no packages), so two files with the same name in
different folders break the collection of the whole suite; member test files carry the member's name."""
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_file_basenames_are_unique():
    seen = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        seen[path.name].append(str(path.relative_to(TESTS)))
    assert not {k: v for k, v in seen.items() if len(v) > 1}
