"""The bind rule `hilreward serve` and the web app share: loopback is open, other addresses need a token."""

from __future__ import annotations

import pytest

from hilreward.access import TOKEN_ENV, check_bind, is_loopback
from hilreward.errors import ConfigError
from hilreward.serving.config import ServeConfig, validate


def test_loopback_addresses():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.2.1", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.5", "::", "example.org"))


def test_other_addresses_need_a_token_from_the_option_or_the_environment(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    check_bind("127.0.0.1", None, False)
    with pytest.raises(ConfigError, match=r"host=0.0.0.0 is reachable from other machines: set token=<secret> "
                                          r"\(or \$HILREWARD_TOKEN\), or insecure=true"):
        check_bind("0.0.0.0", None, False)
    check_bind("0.0.0.0", "s3cret", False)
    check_bind("0.0.0.0", None, True)
    cfg = ServeConfig(checkpoint="ckpt", host="0.0.0.0")
    with pytest.raises(ConfigError, match="reachable from other machines"):
        validate(cfg)  # hilreward serve applies the same rule
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    check_bind("0.0.0.0", None, False)
    validate(cfg)
