"""Perception: sensors with self-reported confidence, a trust engine, trust-weighted fusion, fault injection."""

from sage_gr00t.perceive.camera import (
    CameraConfig,
    CameraObjectEstimator,
    CameraSensor,
    VisualSignature,
)
from sage_gr00t.perceive.faults import FaultConfig, FaultyCamera
from sage_gr00t.perceive.fusion import (
    FusedEstimate,
    FusionConfig,
    PerceptionPipeline,
    PipelineConfig,
    SensorFusion,
    default_sensors,
)
from sage_gr00t.perceive.memory import MemorySensor
from sage_gr00t.perceive.proprioception import ProprioceptionSensor
from sage_gr00t.perceive.readings import Estimate, Sensor, SensorReading
from sage_gr00t.perceive.trust import TrustConfig, TrustEngine

__all__ = [
    "CameraConfig",
    "CameraObjectEstimator",
    "CameraSensor",
    "Estimate",
    "FaultConfig",
    "FaultyCamera",
    "FusedEstimate",
    "FusionConfig",
    "MemorySensor",
    "PerceptionPipeline",
    "PipelineConfig",
    "ProprioceptionSensor",
    "Sensor",
    "SensorFusion",
    "SensorReading",
    "TrustConfig",
    "TrustEngine",
    "VisualSignature",
    "default_sensors",
]
