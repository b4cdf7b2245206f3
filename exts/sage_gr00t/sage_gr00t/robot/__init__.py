"""The Unitree G1 as a hardware backend: Unitree's Python SDK over Cyclone DDS (the `[robot]` extra).

    g1_map      joint groups -> Unitree motor indices (29-DoF body, Dex3 hands), kp / kd from the embodiment
    dds         one DDS domain on one network interface; unitree_hg LowCmd_ / LowState_ / HandCmd_ messages
    images      head-camera frames over ZMQ (Unitree's image-server JPEG frames, or raw RGB with a header,
                and 16-bit depth beside it for SAGE's perception)
    validator   the last gate before rt/arm_sdk: malformed, non-finite or out-of-range commands never go out
    backend     `UnitreeG1Backend`: the simulators' observation / action dicts over DDS (and the camera calls
                SAGE's perception makes); 50 Hz command loop, watchdog (stale rt/lowstate or camera -> hold),
                loop-period and round-trip statistics
    standin     a stand-in G1: the project's MuJoCo G1 task env behind the same topics at 500 Hz
    protocol    the deployment protocol: pre-flight (e-stop, calibration, limits), slow start, recording;
                episodes of a policy behind a safety filter, or of SAGE itself

Nothing here imports the SDK at package import: `sage_gr00t.robot.dds` does, and says how to install it.
"""
