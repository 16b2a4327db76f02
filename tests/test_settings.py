"""The one settings schema: what it declares, and the messages a user gets from it."""

from __future__ import annotations

import dataclasses
import math

import pytest

from muse.loader import PipelineConfig
from muse.settings import SCHEMA, GenerationSettings, SamplerSettings, SettingError


def test_every_setting_is_declared_once_with_its_words():
    names = [f.name for f in dataclasses.fields(GenerationSettings)]
    assert sorted(names) == sorted(SCHEMA)  # every field carries its Setting, nothing else is a setting
    assert set(f.name for f in dataclasses.fields(SamplerSettings)) < set(SCHEMA)
    for spec in SCHEMA.values():
        assert spec.label and spec.help, spec.name
        assert getattr(GenerationSettings(), spec.name) == spec.default
        if spec.kind in (int, float):
            assert spec.lo is not None and spec.hi is not None and spec.lo < spec.hi


@pytest.mark.parametrize("name, value, message", [
    ("timesteps", 0, "timesteps must be a whole number from 1 to 256, got 0."),
    ("timesteps", 2.5, "timesteps must be a whole number from 1 to 256, got 2.5."),
    ("timesteps", True, "timesteps must be a whole number"),
    ("cond_scale", math.inf, "cond_scale must be a number from 0 to 100, got inf."),
    ("temperature", math.nan, "temperature must be a number"),
    ("topk_filter_thres", 1.0, "topk_filter_thres must be a number from 0 to below 1, got 1.0."),
    ("schedule", "zigzag", "schedule must be one of cosine, linear, arccos, power or a callable; got 'zigzag'."),
    ("use_critic", "yes", "use_critic must be true or false, got 'yes'."),
    ("num_images", 17, "num_images must be a whole number from 1 to 16"),
    ("seed", -1, "seed must be a whole number from 0 to"),
])
def test_bad_values_name_the_setting_and_its_range(name, value, message):
    with pytest.raises(SettingError) as err:
        GenerationSettings(**{name: value})
    assert str(err.value).startswith(message)


def test_tighter_limits_and_form_values_go_through_the_same_checker():
    timesteps = SCHEMA["timesteps"]
    assert timesteps.check("12", limits=(1, 64), coerce=True) == 12  # what a form or JSON client sends
    assert timesteps.check(12.0, limits=(1, 64), coerce=True) == 12
    with pytest.raises(SettingError, match="timesteps must be a whole number from 1 to 64, got 65."):
        timesteps.check(65, limits=(1, 64))
    with pytest.raises(SettingError):
        timesteps.check("12")  # from Python, text is not a number
    assert SCHEMA["use_critic"].check("false", coerce=True) is False
    assert SCHEMA["use_critic"].check(1, coerce=True) is True
    with pytest.raises(SettingError):
        SCHEMA["use_critic"].check(1)
    assert SCHEMA["seed"].check(None) is None  # no seed: one is drawn
    assert SCHEMA["cond_scale"].check(3) == 3.0 and isinstance(SCHEMA["cond_scale"].check(3), float)
    long = "x" * 10_000
    with pytest.raises(SettingError) as err:
        SCHEMA["schedule"].check(long)
    assert len(str(err.value)) < 200  # a huge input is not echoed back


def test_sampler_part_and_custom_schedules():
    s = GenerationSettings(timesteps=5, temperature=0.5, cond_scale=2.0, schedule=lambda r: 1 - r)
    sampler = s.sampler()
    assert isinstance(sampler, SamplerSettings) and sampler.timesteps == 5 and sampler.temperature == 0.5
    assert not hasattr(sampler, "cond_scale")


def test_weights_defaults_are_checked_by_the_schema():
    assert PipelineConfig(defaults={"timesteps": 8, "something_else": 1}).defaults["timesteps"] == 8
    with pytest.raises(ValueError, match="timesteps"):
        PipelineConfig(defaults={"timesteps": 0})


def test_groups_name_where_each_setting_goes_and_in_what_order():
    from muse.settings import AMUSED_SCHEMA, COLUMN, GROUPS, PAGE, grouped

    settings = {**SCHEMA, **AMUSED_SCHEMA}
    for group in GROUPS:
        places = [s.place(group) for s in settings.values() if s.place(group) is not None]
        assert len(places) == len(set(places)), group  # one place per setting in each group
    assert all(group in GROUPS for s in settings.values() for group, _ in s.groups)
    assert grouped(SCHEMA, COLUMN) == ("order", "critic_noise_scale", "schedule", "cond_scale", "temperature",
                                       "timesteps", "guidance_schedule")
    assert grouped(SCHEMA, PAGE, offered=frozenset()) == ("timesteps", "cond_scale", "temperature",
                                                           "topk_filter_thres", "order", "schedule", "seed",
                                                           "num_images", "guidance_schedule")
    assert "use_critic" not in grouped(SCHEMA, PAGE)  # the page offers the orders, the critic's among them
    assert SCHEMA["critic_noise_scale"].needs() == {"critic"} and SCHEMA["timesteps"].needs() == frozenset()
    assert "choice_temperature" not in grouped(SCHEMA, PAGE)  # a setting of the library, not of the page
