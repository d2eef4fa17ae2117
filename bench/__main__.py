"""``python -m bench``: see ``bench.cli``. Importing this module must stay cheap: the spawned
load-generator process runs it as ``__mp_main__``."""

import sys

if __name__ == "__main__":
    from .cli import main

    sys.exit(main())
