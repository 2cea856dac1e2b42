"""``python -m swarm_actors._cli``: the ``swarm-actors`` command."""

import sys

from swarm_actors._cli import main

if __name__ == "__main__":
    sys.exit(main())
