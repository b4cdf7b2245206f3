"""Isaac Lab's `isaaclab.tasks` entry point (pyproject.toml): importing it registers the Isaac Lab gym id of
every task in the registry (`SageGr00t-PickApple-v0`, ...), so `isaaclab random_agent --task ...` finds them."""

from sage_gr00t.sim.isaaclab.registration import register_isaaclab_tasks

# The config builders are bound here (`PickAppleEnvCfg`, ...) so the ids name them within this package.
GYM_IDS = register_isaaclab_tasks(globals(), __name__)
