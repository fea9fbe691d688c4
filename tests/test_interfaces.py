"""The sefm_interfaces contract works across real processes on a real DDS graph."""
from sefm_cli import interface_probe


def test_every_message_type_crosses_between_processes():
    received = interface_probe.exchange(interface_probe.MESSAGE_TYPES, timeout=30.0)
    assert set(received) == set(interface_probe.MESSAGE_TYPES)


def test_every_service_type_answers_across_processes():
    replies = interface_probe.call_services(interface_probe.SERVICE_TYPES, timeout=30.0)
    assert set(replies) == set(interface_probe.SERVICE_TYPES)
    assert all("value-" in reply for reply in replies.values())  # the request's strings arrived


def test_messages_carry_the_join_keys():
    # The trainer joins (observation, action, reward) by station, episode and observation stamp.
    for name in ("PolicyAction", "StepsToGo"):
        fields = interface_probe.load_type("msg", name).get_fields_and_field_types()
        assert fields["observation_stamp"] == "builtin_interfaces/Time"
        assert fields["episode_id"] == "uint64"
        assert fields["step"] == "uint32"


def test_episode_outcomes_are_distinct_constants():
    from sefm_interfaces.msg import EpisodeEvent

    outcomes = {k: v for k, v in vars(EpisodeEvent).items() if k.startswith("OUTCOME_")}
    assert {"OUTCOME_SUCCESS_DETECTED", "OUTCOME_TIMEOUT", "OUTCOME_OPERATOR_ABORT",
            "OUTCOME_FAULT", "OUTCOME_ESTOP"} <= set(outcomes)
    assert len(set(outcomes.values())) == len(outcomes)


def test_fill_gives_equal_messages_for_equal_nonces_and_different_for_others():
    a, b, c = (interface_probe.expected("StepsToGo", n) for n in (3, 3, 4))
    assert a == b and a != c
