"""Where the repository's folders are (templates/, static/, docs/, migrations/, instance/)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
