import pytest

from protocol.errors import TopicError
from protocol.topics import Channel, DeviceClass, DeviceTopic, subscription


def test_topic_round_trips_through_its_string() -> None:
    topic = DeviceTopic("sefrou", DeviceClass.STREETLIGHT, "sl-0001", Channel.TELEMETRY)
    assert str(topic) == "sc/sefrou/streetlight/sl-0001/telemetry"
    assert DeviceTopic.parse(str(topic)) == topic


def test_device_id_sits_at_the_fourth_level_for_acls() -> None:
    topic = DeviceTopic("sefrou", DeviceClass.BUILDING, "town-hall-archives", Channel.COMMAND)
    assert str(topic).split("/")[3] == "town-hall-archives"


@pytest.mark.parametrize(
    ("topic", "complaint"),
    [
        ("sc/sefrou/streetlight/sl-1", "has 4 levels"),
        ("xx/sefrou/streetlight/sl-1/telemetry", "must start with 'sc'"),
        ("sc/sefrou/lamp/sl-1/telemetry", "unknown device class 'lamp'"),
        ("sc/sefrou/streetlight/sl-1/data", "unknown channel 'data'"),
        ("sc/sefrou/streetlight/SL-1/telemetry", "device id 'SL-1' is not a valid identifier"),
        ("sc/sefrou/streetlight/-sl/telemetry", "device id '-sl'"),
        ("sc//streetlight/sl-1/telemetry", "site '' is not a valid identifier"),
    ],
)
def test_bad_topics_are_refused_with_the_level_named(topic: str, complaint: str) -> None:
    with pytest.raises(TopicError, match=complaint):
        DeviceTopic.parse(topic)


def test_subscription_filter_covers_every_device_of_a_channel() -> None:
    assert subscription(Channel.EVENT) == "sc/+/+/+/event"
    assert subscription(Channel.STATE, site="sefrou") == "sc/sefrou/+/+/state"
