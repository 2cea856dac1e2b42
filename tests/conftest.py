import os

from hypothesis import HealthCheck, settings

# The fixtures users get (actor_system, virtual_clock); our own tests use them too.
pytest_plugins = ["swarm_actors.pytest_plugin"]

# "ci" explores more; "dev" keeps the local loop fast. Select with HYPOTHESIS_PROFILE.
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
