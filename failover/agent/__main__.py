"""``python -m failover.agent --config FILE``: run a site's agent."""

import sys

from failover.agent.main import main

sys.exit(main())
