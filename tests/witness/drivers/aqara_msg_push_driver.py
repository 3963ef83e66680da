"""Validates push bodies with aqara-msg-push 1.0.2, Aqara's published schema of its push
messages (pydantic models). Its RocketMQ consumer needs a native library the bridge does not
use (it receives pushes over HTTP): a stand-in module lets the schema be imported alone."""

from __future__ import annotations

import sys
import types
from typing import Any

from _driver import serve

rocketmq = types.ModuleType("rocketmq")
rocketmq_client = types.ModuleType("rocketmq.client")
for name in ("ConsumeStatus", "PushConsumer", "ReceivedMessage"):
    setattr(rocketmq_client, name, type(name, (), {}))
sys.modules.update({"rocketmq": rocketmq, "rocketmq.client": rocketmq_client})

from aqara_msg_push.schema import TopLevelMessage  # noqa: E402
from aqara_msg_push.schema.device_attr_msg import TriggerSource  # noqa: E402
from aqara_msg_push.schema.enums import TriggerResult  # noqa: E402
from aqara_msg_push.schema.mixin import TimeMixin  # noqa: E402
from aqara_msg_push.tools import get_object  # noqa: E402


class SpecMessage(TimeMixin, TopLevelMessage):
    """The envelope fields the schema defines for every message, applied to a trait push."""

    msgType: str


def validate(req: dict[str, Any]) -> str:
    """The schema's class for this body (ValueError from pydantic when it does not parse)."""
    return type(get_object(req["body"])).__name__


def validate_trait_push(req: dict[str, Any]) -> str:
    """A ``spec_report``: its envelope, and each item's statusCode and triggerSource."""
    body = req["body"]
    SpecMessage(**body)
    for item in body["data"]:
        TriggerResult(item["statusCode"])
        TriggerSource(**item["triggerSource"])
    return "SpecMessage"


serve({"validate": validate, "validate_trait_push": validate_trait_push})
