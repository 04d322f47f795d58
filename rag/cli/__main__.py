"""``python -m rag.cli``."""

import sys

from rag.cli.main import main

sys.exit(main())
