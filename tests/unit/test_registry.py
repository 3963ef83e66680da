"""The backend registry: every kind's config model is accepted by the config and builds its
client (a new backend is its folder plus one registry line)."""

from __future__ import annotations

from bridge.backends.registry import KINDS, make_backend
from bridge.config import SUPPORTED_BACKENDS, parse_config

BACKENDS = """backends:
  - {type: studio, url: 127.0.0.1:1, token: tok-123456}
  - {type: aqara_cloud, url: "http://127.0.0.1:1", app_id: a, key_id: k, app_key: s3cret,
     access_token: t0ken}
  - {type: tuya, url: "http://127.0.0.1:1", push: false, client_id: c, secret: s3cret, uid: u}
"""


def test_each_kind_is_configurable_and_builds_its_client() -> None:
    assert SUPPORTED_BACKENDS == ("studio", "aqara_cloud", "tuya")
    config = parse_config(BACKENDS, "config.yaml")
    for spec, kind in zip(config.backends, KINDS, strict=True):
        assert isinstance(spec, kind.config)
        backend = make_backend(spec)
        assert backend.kind == spec.type
        assert backend.name == spec.name
