"""``python tests/fake_judge_cli.py ARGS``: the real skyrm CLI with the test judge registered as ``fake:``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from skyrm.cli import main  # noqa: E402
from skyrm.judges import register_backend  # noqa: E402

register_backend("fake", "fake_judge:FakeJudge")

if __name__ == "__main__":
    main()
