"""Any declared task as an Isaac Lab 3.0 manager-based environment (kit-less, Newton physics).

    registration  gym ids for every task in the registry (needs only gymnasium; Isaac Lab imports it at startup)
    env_cfg       `TabletopEnvCfg` / `build_env_cfg(task_name, ...)`: one config filled from a task's declaration
    spawners      objects without USD files, from their declared primitive geoms
    robot         the embodiment's MJCF read for Isaac Lab (servo gains, prim paths, hand colliders, kinematics)
    physics       Newton's MuJoCo solver: C MuJoCo for one env on the CPU, mujoco_warp otherwise
    scene         `IsaacLabScene`: the task's `SceneAccess` on Isaac Lab state
    mdp           event / reward terms running the task's `place` and `is_success`, the randomization profile
    env           `IsaacLabTaskEnv`: the `TaskEnv` interface (GR00T dicts); `make_env(name, backend="isaaclab")`

Only `registration` and `robot` import without Isaac Lab.
"""
