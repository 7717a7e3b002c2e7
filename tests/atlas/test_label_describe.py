"""Labels that say more (issue 17): early layers by what they read, late by what they write, the tokens named and
how much of the evidence they carry."""

from __future__ import annotations

import pytest

from circuitboard.atlas.labels import Evidence, describe, label_detail, named_inputs, named_outputs, write_share

INPUTS = [(" the", 50.0), (" a", 20.0), (" an", 5.0)]
OUTPUTS = [(" Paris", 3.0), (" France", 2.5), (" x", 1.0), (" y", 0.5)]


def test_early_layers_say_what_they_read_with_context_and_share():
    lab = describe(Evidence(1, 18, INPUTS, 100.0, OUTPUTS, [(" in", 12), (" on", 3)]))
    assert lab.text == 'on "the"/"a" after "in" · 70%' and lab.side == "reads"
    assert lab.reads == [" the", " a"] and lab.read_share == pytest.approx(0.7)


def test_late_layers_say_what_they_write():
    lab = describe(Evidence(16, 18, INPUTS, 100.0, OUTPUTS))
    assert lab.text == '→ "Paris"/"France" · 79%' and lab.side == "writes"
    assert lab.writes == [" Paris", " France"] and lab.write_share == pytest.approx(5.5 / 7.0)


def test_middle_layers_name_both_sides():
    lab = describe(Evidence(9, 18, [(" Dallas", 50.0)], 100.0, [(" Texas", 3.0), (" x", 1.0), (" y", 1.0)]))
    assert lab.text == 'on "Dallas" → "Texas" · 50/60%' and lab.side == "writes"
    assert describe(Evidence(9, 18, [], 0.0, [])).text == "(no statistics)"


def test_named_tokens_and_shares():
    assert named_inputs(INPUTS) == [0, 1] and named_inputs([]) == []
    assert named_outputs(OUTPUTS) == [0, 1] and named_outputs([(" x", -1.0)]) == []
    assert write_share(OUTPUTS, [0]) == pytest.approx(3 / 7) and write_share([], []) == 0.0


def test_label_detail_of_a_record():
    examples = [{"tokens": [" in", " the", " city"], "center": 1}, {"tokens": [" in", " a"], "center": 1}]
    record = {
        "layer": 0,
        "n_active": 10,
        "mean_act": 10.0,
        "top_input_tokens": [{"text": t, "value": v} for t, v in INPUTS],
        "top_logits": [{"text": t, "value": v} for t, v in OUTPUTS],
        "examples": examples,
    }
    detail = label_detail(record, n_layers=18)
    assert detail["text"] == 'on "the"/"a" after "in" · 70%' and detail["confidence"] == pytest.approx(0.7)
    assert label_detail({**record, "n_active": 0}, 18)["text"] == "dead feature"
