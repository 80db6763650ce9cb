"""`python -m cdp_mcp.cli`."""

import sys

from cdp_mcp.cli.main import main

sys.exit(main())
