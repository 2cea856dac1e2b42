"""``python -m swarm_actors._cli``: the ``swarm-actors`` command."""

import sys

from swarm_actors._cli import main

sys.exit(main())
