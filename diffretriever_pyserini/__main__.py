"""``python -m diffretriever_pyserini`` = the ``diffretriever-pyserini`` console script."""

import sys

from diffretriever_pyserini.cli import main

sys.exit(main())
