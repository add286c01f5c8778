from __future__ import annotations

import sys

from driftwatch.cli import main

sys.exit(main())
