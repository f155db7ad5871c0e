"""devices.set_cpu_env_defaults: the OpenMP wait policy is in the environment before torch loads."""

import os
import subprocess
import sys
from pathlib import Path

from odin_ood._utils.devices import CPU_ENV_DEFAULTS, set_cpu_env_defaults

ROOT = Path(__file__).resolve().parents[1]

# records the environment at the moment torch is first imported, then imports the command line and
# builds its parser (importing every command module, which loads torch: odin_ood.cli alone does not)
PROBE = """
import importlib.abc, os, sys
seen = {}
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and "policy" not in seen:
            seen["policy"] = os.environ.get("OMP_WAIT_POLICY")
        return None
sys.meta_path.insert(0, Watch())
import odin_ood.cli
odin_ood.cli.build_parser()
print(seen.get("policy"), "torch" in sys.modules)
"""


def _probe(env: dict) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=True
    )
    return out.stdout.split()


def test_cli_sets_passive_wait_policy_before_torch_is_imported():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(ROOT / "src")
    assert _probe(env) == ["PASSIVE", "True"]


def test_a_users_own_wait_policy_wins():
    env = dict(os.environ, OMP_WAIT_POLICY="ACTIVE", PYTHONPATH=str(ROOT / "src"))
    assert _probe(env) == ["ACTIVE", "True"]


def test_defaults_fill_only_what_is_missing():
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert set_cpu_env_defaults(environ) == {}  # torch is loaded in this process: no effect
    assert environ == {"OMP_WAIT_POLICY": "ACTIVE"} and CPU_ENV_DEFAULTS == {"OMP_WAIT_POLICY": "PASSIVE"}
