"""Upstream Isaac-GR00T N1.5 (`gr00t.model.policy.Gr00tPolicy`) in-process, behind our `Policy` protocol.

Upstream is not on PyPI; it must be installed from source (branch `n1.5-release`). Without it, run
upstream's `scripts/inference_service.py --server` on a GPU machine and use `RemotePolicyClient`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_INSTALL_HINT = (
    "UpstreamGr00tPolicy needs NVIDIA's Isaac-GR00T N1.5 package (`gr00t`), which is not on PyPI. "
    "Install it from source: `git clone -b n1.5-release https://github.com/NVIDIA/Isaac-GR00T && "
    "pip install -e Isaac-GR00T` (it pins its own torch/transformers/flash-attn; a separate venv is wise). "
    "Alternative without installing it here: run upstream's `python scripts/inference_service.py --server "
    "--model_path <ckpt> --embodiment_tag <tag> --data_config <cfg> --port 5555` on a GPU machine and use "
    "`sage_gr00t.policy.remote.RemotePolicyClient(host, 5555)` as the policy."
)


class UpstreamGr00tPolicy:
    """Delegates to upstream `Gr00tPolicy(model_path, embodiment_tag, modality_config, modality_transform)`.

    `data_config` is a key of upstream's `DATA_CONFIG_MAP` (e.g. "gr1_arms_waist", "unitree_g1") or,
    on checkouts that support it, a "module:Class" path understood by `load_data_config`.
    """

    def __init__(
        self,
        model_path: str,
        embodiment_tag: str = "new_embodiment",
        data_config: str = "unitree_g1",
        device: str = "cuda",
        denoising_steps: int | None = None,
    ) -> None:
        try:
            from gr00t.experiment import data_config as upstream_data_config
            from gr00t.model.policy import Gr00tPolicy
        except ImportError as e:
            raise ImportError(f"{_INSTALL_HINT} (import failed: {e})") from e

        cfg = self._resolve_data_config(upstream_data_config, data_config)
        self.policy = Gr00tPolicy(
            model_path=model_path,
            embodiment_tag=embodiment_tag,
            modality_config=cfg.modality_config(),
            modality_transform=cfg.transform(),
            denoising_steps=denoising_steps,
            device=device,
        )

    @staticmethod
    def _resolve_data_config(module: Any, name: str) -> Any:
        loader = getattr(module, "load_data_config", None)
        if loader is not None:  # later n1.5-release commits: names and "module:Class" paths
            return loader(name)
        configs = module.DATA_CONFIG_MAP
        if name not in configs:
            raise ValueError(f"unknown upstream data_config {name!r}; choose one of {sorted(configs)}")
        return configs[name]

    def reset(self) -> None:
        # N1.5's Gr00tPolicy keeps no per-episode state (each call is one observation -> one chunk).
        reset = getattr(self.policy, "reset", None)
        if callable(reset):
            reset()

    def get_action(self, observation: dict) -> dict[str, np.ndarray]:
        return self.policy.get_action(observation)

    def get_modality_config(self) -> dict[str, Any]:
        return self.policy.get_modality_config()
