"""Keep secrets out of what a run records (``run.json``, ``.hydra/``, logged hyperparameters).

Secrets belong in the environment (``WANDB_API_KEY``, ``HF_TOKEN``, ...), which encoderlab never records.
When one reaches the config anyway — an override such as ``+hf_token=...``, a URL with credentials, or
``${oc.env:HF_TOKEN}`` resolved into a logged value — these helpers replace it with ``***`` before it is
written:

* values under keys named like secrets (``*_token``, ``*api_key``, ``password``, ``secret``, ...; not
  ``tokenizer`` or ``pad_token_id``),
* ``key=value`` overrides (in argv, Hydra's override lists) with such keys,
* the password part of ``scheme://user:password@host`` URLs,
* the value of any secret-named environment variable, wherever it appears in a string.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from encoderlab.files import atomic_file

MASK = "***"
SECRET_LAST_WORDS = {"token", "secret", "password", "passwd", "credential", "credentials", "apikey"}
SECRET_LAST_PAIRS = {("api", "key"), ("access", "key"), ("secret", "key"), ("private", "key")}
MIN_ENV_SECRET = 6  # shorter environment values are not searched for (too many false hits)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/\s:@]*):(?P<pw>[^/\s@]+)@")
_OVERRIDE = re.compile(r"(?P<pre>^|[\s,])(?P<op>[+~]*)(?P<key>[A-Za-z_][\w.@/-]*)=(?P<value>[^\s,]*)")


def is_secret_key(key: str) -> bool:
    """Whether a config key or environment variable name names a secret (by its last word(s))."""
    last = str(key).split("@")[0].rsplit(".", 1)[-1].lower()
    words = [w for w in re.split(r"[_\-]+", last) if w]
    if not words:
        return False
    return words[-1] in SECRET_LAST_WORDS or tuple(words[-2:]) in SECRET_LAST_PAIRS


def env_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the secret-named environment variables (longest first)."""
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if is_secret_key(k) and len(v) >= MIN_ENV_SECRET}
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    """A string with URL passwords, secret-keyed ``key=value`` overrides and known secret values masked."""
    secrets = env_secrets() if secrets is None else secrets
    for value in secrets:
        text = text.replace(value, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)

    def override(m: re.Match) -> str:
        if not is_secret_key(m["key"]) or not m["value"]:
            return m.group(0)
        return f"{m['pre']}{m['op']}{m['key']}={MASK}"

    return _OVERRIDE.sub(override, text)


def redact(data, secrets: list[str] | None = None):
    """A copy of ``data`` (dicts, lists, strings, scalars) with every secret masked."""
    secrets = env_secrets() if secrets is None else secrets
    if isinstance(data, Mapping):
        return {
            k: (MASK if is_secret_key(str(k)) and data[k] not in (None, "") else redact(v, secrets))
            for k, v in data.items()
        }
    if isinstance(data, list | tuple):
        return type(data)(redact(v, secrets) for v in data)
    if isinstance(data, str):
        return redact_text(data, secrets)
    return data


def redact_argv(argv: list[str]) -> list[str]:
    return [redact_text(arg) for arg in argv]


def redact_yaml_files(directory: str | Path) -> list[Path]:
    """Rewrite every ``*.yaml`` under ``directory`` (Hydra's ``.hydra/``) that holds a secret; returns them.

    Files without secrets are left byte-for-byte alone.
    """
    changed = []
    secrets = env_secrets()
    for path in sorted(Path(directory).rglob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        clean = redact(data, secrets)
        if clean != data:
            with atomic_file(path) as tmp:
                tmp.write_text(yaml.safe_dump(clean, sort_keys=False, allow_unicode=True))
            changed.append(path)
    return changed
