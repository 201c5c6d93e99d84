"""Print the environment relevant to `focus` (same as `python -m focus.collect_env`)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from focus.collect_env import main  # noqa: E402

if __name__ == "__main__":
    main()
