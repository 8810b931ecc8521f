"""Property-based: a random value in any stack config key gives one one-line error naming that key (or a
valid config), never a traceback from inside the models.

The base is a valid GKE config; hypothesis picks a documented key (``coordinator.tls.mode``,
``agents.egress_allow[].cidr``, ...) and a value of any JSON type, unicode edge cases included.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.config import parse_config
from components.config_errors import ConfigError
from components.docs import config_keys, rule_lines

BASE: dict[str, Any] = {
    "platform": "gke",
    "gcp": {"project": "my-project"},
    "cluster": {"create": False, "gke": {"master_authorized_networks": [{"cidr": "203.0.113.0/24"}]}},
    "coordinator": {"hostname": "swarm.example.com"},
    "agents": {"handler": "my.pkg:run", "egress_allow": [{"cidr": "0.0.0.0/0"}]},
    "redis": {"mode": "memorystore", "memorystore": {"network": "vpc"}},
}
KEYS = config_keys()
RULE_KEYS = {key for line in rule_lines() for key in re.findall(r"`([^`]+)`", line.split(":")[0])}
"""The full keys the cross-field rules name: a valid value in one key can break a rule naming another."""
VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**64), max_value=2**64),
        st.floats(),
        st.text(max_size=30),
        st.sampled_from(["", "\x00", "\u202e", "\U0001f600", "-1", "1e309", "true", "{}", "[]", "a" * 300]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _with(config: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``config`` with ``value`` at the dotted ``key``; ``[]`` is the first item of a list BASE holds."""
    out = copy.deepcopy(config)
    node: Any = out
    parts = [part for part in key.replace("[]", ".[]").split(".")]
    for part in parts[:-1]:
        if part == "[]":
            node = node[0]
        else:
            node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def test_the_base_is_valid() -> None:
    assert parse_config(BASE).redis.mode == "memorystore"
    assert len(KEYS) > 80


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_any_value_in_any_key_gives_one_line_naming_it(key: str, value: Any) -> None:
    config = _with(BASE, key, value)
    try:
        parse_config(config)
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message and message.startswith("invalid stack config ")
        named = re.sub(r"\[\d+\]", "[]", err.key)
        # the key itself, the section holding it (a section that is not a mapping), a key inside the value
        # (a mapping given where a scalar belongs), or a cross-field rule the new value broke
        assert named == key or key.startswith(named) or named.startswith(key) or named in RULE_KEYS, (
            key,
            message,
        )
    except Exception as exc:  # anything else is a traceback for the user
        pytest.fail(f"{key}={value!r}: {type(exc).__name__}: {exc}")


def test_a_control_character_in_an_unknown_key_stays_on_one_line() -> None:
    """Found by the fuzz test above: a newline in an unknown key once split the message in two."""
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, "coordinator": {"\n": None}})
    message = str(caught.value)
    assert "\n" not in message and "coordinator.\\n" in message, message
