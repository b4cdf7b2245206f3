"""One policy factory: a spec string -> a `Policy`, for every command, the panel and the Kit extension.

    expert                         the scripted expert (privileged: reads simulator state)
    <folder>                       a native checkpoint (config.json + model.safetensors + experiment_cfg/)
    <folder>?guidance=G            the same with classifier-free language guidance G (checkpoints trained with
                                   --language-dropout; G = 1 is no guidance)
    zmq://host:port[?token=T][&protocol=P]  a GR00T inference server (ours: `sage-serve`, or upstream's service);
                                   P: n1.5 (default), n1.6 / n1.7 (upstream's N1.6 layout), auto (ask the server)
    upstream:<checkpoint>          upstream Isaac-GR00T's own `Gr00tPolicy` in-process (needs the `gr00t` package)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sage_gr00t.paths import REPO_ROOT
from sage_gr00t.policy.base import Policy
from sage_gr00t.tasks.protocols import TaskEnv

SPEC_FORMS = "'expert', a checkpoint folder, 'zmq://HOST:PORT' or 'upstream:CHECKPOINT'"


class PolicySpecError(ValueError):
    """A policy spec that names no policy this project can build."""


def resolve_path(path: str | Path) -> Path:
    """A path as given if it exists, else relative to the repository root (assets/... from any cwd)."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    return REPO_ROOT / p


@dataclass(frozen=True)
class PolicySpec:
    """A parsed policy spec string."""

    kind: str  # "expert" | "checkpoint" | "zmq" | "upstream"
    target: str = ""  # checkpoint path, or host
    port: int = 0
    token: str | None = None
    protocol: str = "n1.5"  # zmq only: "n1.5" | "n1.6" | "auto"
    guidance: float = 1.0  # checkpoint only: classifier-free language guidance

    @staticmethod
    def parse(spec: str) -> PolicySpec:
        spec = (spec or "").strip()
        if not spec:
            raise PolicySpecError(f"Empty policy spec; use {SPEC_FORMS}.")
        if spec == "expert":
            return PolicySpec("expert")
        if spec.startswith("zmq://"):
            parts = urlsplit(spec)
            try:
                port = parts.port
            except ValueError:
                port = None
            if not parts.hostname or port is None:
                raise PolicySpecError(f"Policy {spec!r}: expected zmq://HOST:PORT (e.g. zmq://127.0.0.1:5555).")
            query = parse_qs(parts.query)
            token = query.get("token", [None])[0]
            from sage_gr00t.policy.remote import normalize_protocol

            try:
                protocol = normalize_protocol(query.get("protocol", ["n1.5"])[0], allow_auto=True)
            except ValueError as e:
                raise PolicySpecError(f"Policy {spec!r}: {e} (e.g. zmq://127.0.0.1:5555?protocol=n1.6).") from None
            return PolicySpec("zmq", parts.hostname, port, token, protocol)
        if spec.startswith("upstream:"):
            path = spec.removeprefix("upstream:")
            if not path:
                raise PolicySpecError("Policy 'upstream:' needs a checkpoint path: upstream:/path/to/GR00T-N1.5-3B.")
            return PolicySpec("upstream", path)
        guidance = 1.0
        if "?" in spec:
            spec, _, query = spec.partition("?")
            options = parse_qs(query)
            if set(options) != {"guidance"}:
                raise PolicySpecError(f"Policy {spec!r}: the only checkpoint option is ?guidance=G, got ?{query}.")
            try:
                guidance = float(options["guidance"][0])
            except ValueError:
                guidance = float("nan")
            if not guidance >= 0 or guidance == float("inf"):
                raise PolicySpecError(f"Policy {spec!r}: guidance must be a number >= 0 (e.g. ?guidance=2), "
                                      f"got {options['guidance'][0]!r}.")
        path = resolve_path(spec)
        if not path.is_dir():
            raise PolicySpecError(f"Policy {spec!r} is not {SPEC_FORMS} ({path} is not a folder). The shipped "
                                  "checkpoint is assets/policies/gr00t_compact.")
        return PolicySpec("checkpoint", str(path), guidance=guidance)


def make_policy(spec: str, env: TaskEnv | None = None, device: str = "cpu", embodiment: str | None = None,
                timeout_ms: int = 15000) -> Policy:
    """Build the policy a spec names. `env` is needed by the expert; the embodiment defaults to the env's."""
    parsed = PolicySpec.parse(spec)
    embodiment = embodiment or (env.embodiment.name if env is not None else None)
    if parsed.kind == "expert":
        if env is None:
            raise PolicySpecError("Policy 'expert' reads the simulator: it needs an environment.")
        from sage_gr00t.experts.policy import ExpertPolicy

        return ExpertPolicy(env)
    if parsed.kind == "zmq":
        from sage_gr00t.policy.remote import RemotePolicyClient

        return RemotePolicyClient(parsed.target, parsed.port, timeout_ms=timeout_ms, api_token=parsed.token,
                                  protocol=parsed.protocol)
    if parsed.kind == "upstream":
        from sage_gr00t.policy.upstream import UpstreamGr00tPolicy

        return UpstreamGr00tPolicy(parsed.target, device=device)
    from sage_gr00t.policy.gr00t import load_policy

    return load_policy(parsed.target, embodiment=embodiment, device=device, language_guidance=parsed.guidance)
