"""Perception: sensors with self-reported confidence, a trust engine, trust-weighted fusion, fault injection."""

from sage_gr00t.perceive.faults import FaultConfig, FaultyCamera
from sage_gr00t.perceive.fusion import FusedEstimate, FusionConfig, PerceptionPipeline, SensorFusion
from sage_gr00t.perceive.sensors import (
    CameraConfig,
    CameraObjectEstimator,
    CameraSensor,
    ColorTable,
    Estimate,
    MemorySensor,
    ProprioceptionSensor,
    SensorReading,
)
from sage_gr00t.perceive.trust import TrustConfig, TrustEngine

__all__ = [
    "CameraConfig",
    "CameraObjectEstimator",
    "CameraSensor",
    "ColorTable",
    "Estimate",
    "FaultConfig",
    "FaultyCamera",
    "FusedEstimate",
    "FusionConfig",
    "MemorySensor",
    "PerceptionPipeline",
    "ProprioceptionSensor",
    "SensorFusion",
    "SensorReading",
    "TrustConfig",
    "TrustEngine",
]
