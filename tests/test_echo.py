"""Echo suppression (dictated.echo): the mic channel must not repeat what the system channel said,
and the user's own words must still come through, without waiting when the other side is silent."""

from __future__ import annotations

import pytest

from dictated.echo import Action, EchoOptions, EchoSuppressor, Heard, snap, words

FAR = "The children walked along the beach collecting shells and smooth colored stones."
OWN = "Please remember to pick up some milk and fresh fruit on your way home."


def far(text: str = FAR, start: float = 1.0, end: float = 5.0) -> Heard:
    return Heard("system", text, start, end)


def near(text: str, start: float = 1.05, end: float = 5.2) -> Heard:
    return Heard("mic", text, start, end)


def test_an_echo_of_the_other_side_is_dropped():
    s = EchoSuppressor()
    assert [v.action for v in s.push(far(), now=5.5)] == [Action.KEEP]
    # the echo as Whisper heard it, faint and reverberant: two words misheard, one cut short
    (v,) = s.push(
        near("The children walked along the beach, collect shells and blue colored stones."), 5.8
    )
    assert v.action is Action.DROP and v.text == ""
    assert s.stats.dropped == 1


def test_own_voice_while_the_other_side_is_silent_comes_through_at_once():
    s = EchoSuppressor()
    s.push(far(start=1.0, end=5.0), now=5.5)
    (v,) = s.push(near(OWN, start=8.0, end=12.0), now=12.5)
    assert (v.action, v.text, v.held_s) == (Action.KEEP, OWN, 0.0)
    assert s.next_deadline() is None


def test_double_talk_keeps_your_words_and_cuts_theirs():
    s = EchoSuppressor()
    s.push(far(), now=5.5)
    mixed = "The children walked along the beach, collect please remember to pick up some milk and fresh fruit on your way home."
    (v,) = s.push(near(mixed, 1.05, 9.0), now=9.5)
    assert v.action is Action.TRIM
    assert words(v.text) == words(OWN)
    assert s.stats.trimmed == 1


def test_a_short_shared_phrase_is_not_cut():
    """Three words in common, said at the same time, prove nothing: the user may talk over the
    other side with the same words."""
    s = EchoSuppressor()
    s.push(far("What do you think of the budget proposal?"), now=5.5)
    (v,) = s.push(near("I think the budget proposal is fine, really.", 3.0, 7.0), now=7.5)
    assert (v.action, v.text) == (Action.KEEP, "I think the budget proposal is fine, really.")


def test_an_answer_after_they_stopped_is_yours():
    """Answering with their words once they stopped is not an echo (no overlap beyond slack)."""
    s = EchoSuppressor()
    s.push(far("Shall we meet on Thursday afternoon?", 1.0, 3.0), now=3.5)
    (v,) = s.push(near("Yes, Thursday afternoon, we meet on Thursday afternoon.", 3.6, 6.0), 6.5)
    assert v.action is Action.KEEP


def test_the_same_words_at_another_time_are_yours():
    """Repeating what they said a minute ago is a quote, not an echo."""
    s = EchoSuppressor()
    s.push(far(start=1.0, end=5.0), now=5.5)
    (v,) = s.push(near(FAR, start=60.0, end=64.0), now=64.5)
    assert v.action is Action.KEEP


def test_a_mic_final_waits_for_the_overlapping_system_final_then_is_judged():
    s = EchoSuppressor()
    s.speech_started("system", 1.0)
    assert s.push(near(FAR, 1.05, 5.2), now=5.8) == []  # the system final is not in yet
    assert s.next_deadline() == pytest.approx(5.8 + EchoOptions().max_hold_s)
    held, system = s.push(far(), now=7.0)
    assert (held.heard.channel, held.action, system.heard.channel) == ("mic", Action.DROP, "system")
    assert held.held_s == pytest.approx(1.2)
    assert s.next_deadline() is None


def test_the_hold_is_bounded_and_fails_open():
    """A system utterance whose final never comes (dropped as a blip) holds the mic at most
    max_hold_s; then the mic result is published as it is — never lost."""
    s = EchoSuppressor(EchoOptions(max_hold_s=2.0))
    s.speech_started("system", 1.0)
    assert s.push(near(OWN), now=5.0) == []
    assert s.poll(6.9) == []
    (v,) = s.poll(7.0)
    assert (v.action, v.text, v.held_s) == (Action.KEEP, OWN, 2.0)
    assert s.stats.hold_expired == 1


def test_system_speech_starting_after_the_mic_result_does_not_hold_it():
    s = EchoSuppressor()
    s.speech_started("system", 9.0)
    (v,) = s.push(near(OWN, 1.0, 5.0), now=5.5)
    assert (v.action, v.held_s) == (Action.KEEP, 0.0)


def test_held_results_come_out_in_the_order_they_were_heard():
    s = EchoSuppressor()
    s.speech_started("system", 1.0)
    assert s.push(near(FAR, 1.05, 5.2), now=5.8) == []
    # a later mic result, its own speech clear of the system's, still waits behind the first
    assert s.push(near(OWN, 8.0, 9.5), now=10.0) == []
    out = s.push(far(), now=10.5)
    assert [(v.heard.channel, v.action) for v in out] == [
        ("mic", Action.DROP),
        ("mic", Action.KEEP),
        ("system", Action.KEEP),
    ]


def test_other_channels_pass_untouched():
    s = EchoSuppressor()
    s.push(far(), now=5.5)
    (v,) = s.push(Heard("room", FAR, 1.0, 5.0), now=5.6)
    assert (v.action, v.text) == (Action.KEEP, FAR)


def test_memory_is_bounded():
    s = EchoSuppressor(EchoOptions(max_far=4))
    for i in range(100):
        s.speech_started("system", i * 10.0)
        s.push(far(start=i * 10.0, end=i * 10.0 + 3), now=i * 10.0 + 4)
    assert len(s._far) <= 4 and len(s._open) <= 4


def test_snap_maps_misheard_words_to_what_was_said():
    assert snap(["viano", "collect", "the", "table"], ["piano", "collecting", "tea"]) == [
        "piano",
        "collecting",
        "the",
        "table",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"near": ("mic",), "far": ("mic",)}, "both near and far"),
        ({"drop_ratio": 0.0}, "drop_ratio"),
        ({"min_run": 0}, "min_run"),
    ],
)
def test_options_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EchoOptions(**kwargs)


def test_a_runaway_text_is_kept_unjudged():
    """Judging runs on the event loop, so its input is bounded: a text past the word limit (a
    decode that ran away, repeating itself) is published as it is, not compared."""
    s = EchoSuppressor()
    s.push(far(), now=5.5)
    runaway = " ".join([FAR] * 20)  # 260 words
    (v,) = s.push(near(runaway), now=6.0)
    assert (v.action, v.text) == (Action.KEEP, runaway)
