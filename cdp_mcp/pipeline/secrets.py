"""Project secrets a generated project references (`${secret:name}`), checked before a run.

Values come from the environment of the server process, never from the conversation:
secret `td.apikey` is the config's td_api_key (from TD_API_KEY; the deprecated TD_APIKEY
still comes first this release), `shopify.api_key`
from `shopify.api_key` or SHOPIFY_API_KEY. The local backend has no secrets store and needs
none (its unification call runs in-process). Every value read is masked in all output from
then on; `td.apikey` must have TD's key form, like the config's key.
"""

from __future__ import annotations

import os
import re

from cdp_mcp.backends.base import Backend, BackendError, SecretStore
from cdp_mcp.core import redact
from cdp_mcp.core.apikey import key_problem
from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.pipeline.models import PipelineError


def env_names(secret: str) -> list[str]:
    """Environment variables a secret's value is read from, in order."""
    upper = re.sub(r"[^A-Za-z0-9]", "_", secret).upper()
    return [secret, upper] if upper != secret else [secret]


def secret_value(cfg: PipelineConfig, secret: str) -> str | None:
    for name in env_names(secret):
        value = os.environ.get(name)
        if value:
            return value
    if secret == "td.apikey" and cfg.global_.td_api_key is not None:
        return cfg.global_.td_api_key.get_secret_value()
    return None


async def missing_secrets(backend: Backend, project: str, wanted: list[str]) -> list[str]:
    """The referenced secrets the backend's project does not have ([] without a store)."""
    if not wanted or not isinstance(backend, SecretStore):
        return []
    try:
        present = set(await backend.list_secrets(project))
    except BackendError as e:
        raise PipelineError(f"listing the secrets of project {project} failed: {e}") from None
    return sorted(set(wanted) - present)


async def upload_secrets(
    cfg: PipelineConfig, backend: Backend, project: str, names: list[str]
) -> tuple[list[str], dict[str, list[str]]]:
    """Set each named secret from the environment; (set, {missing: env vars tried})."""
    if not isinstance(backend, SecretStore):
        raise PipelineError(
            f"the {cfg.global_.backend} backend keeps no project secrets; nothing to set"
        )
    values, missing = {}, {}
    for name in names:
        value = secret_value(cfg, name)
        if value is None:
            missing[name] = env_names(name)
            continue
        redact.register(value)
        problem = key_problem(value, "TD_APIKEY") if name == "td.apikey" else None
        if problem:  # checked before any upload, so a refused list sets nothing
            raise PipelineError(
                f"secret td.apikey (from {' or '.join(env_names(name))}, else "
                f"global.td_api_key) was not set: {problem}"
            )
        values[name] = value
    done = []
    for name, value in values.items():
        try:
            await backend.set_secret(project, name, value)
        except BackendError as e:
            raise PipelineError(f"setting secret {name} on {project} failed: {e}") from None
        done.append(name)
    return done, missing
