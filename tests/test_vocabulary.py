"""One vocabulary: the JSON Schema's enums are the names the code knows (a test fails when
they drift), and the presets are what Keras and PyTorch document -- values written here
from their documentation, not read from vsconf's own table."""

from __future__ import annotations

import json
import math

import pytest

from vsconf.fans import MODES
from vsconf.initializers import CONSTANTS, DISTRIBUTIONS, FLOAT_DTYPES, PRESETS
from vsconf.matching import FILLABLE_DTYPES, ROLES
from vsconf.streams import STREAMS
from vsconf.spec import KERAS_PRESETS, KERAS_RANDOM, schema_text

SCHEMA = json.loads(schema_text())
DEFS = SCHEMA["$defs"]


def test_schema_enums_are_the_code_s_names():
    assert DEFS["mode"]["enum"] == list(MODES)
    assert DEFS["distribution"]["enum"] == list(DISTRIBUTIONS)
    assert DEFS["dtype"]["enum"] == list(FLOAT_DTYPES) and set(FLOAT_DTYPES) == FILLABLE_DTYPES
    assert DEFS["varianceScalingPreset"]["enum"] == list(PRESETS)
    assert DEFS["presetName"]["enum"] == [*PRESETS, *CONSTANTS, "keep"]
    class_names = DEFS["kerasInit"]["properties"]["class_name"]["enum"]
    assert class_names == ["VarianceScaling", *KERAS_PRESETS, "Zeros", "Ones", "Constant", *KERAS_RANDOM]
    assert sorted(KERAS_PRESETS.values()) == sorted(p for p in PRESETS if p != "torch_default")
    assert DEFS["roleName"]["enum"] == [*ROLES, "any"]
    assert SCHEMA["properties"]["stream"]["enum"] == list(STREAMS)


# (scale, mode, distribution) as the frameworks document them:
# keras.io/api/layers/initializers: GlorotUniform/GlorotNormal = VarianceScaling(1.0, "fan_avg",
# "uniform"/"truncated_normal"); HeNormal/HeUniform = VarianceScaling(2.0, "fan_in", ...);
# LecunNormal/LecunUniform = VarianceScaling(1.0, "fan_in", ...).
DOCUMENTED = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_keras_presets_are_keras_s_definitions(name):
    assert PRESETS[name] == DOCUMENTED[name]


def test_torch_default_is_pytorch_s_linear_and_conv_default():
    # torch.nn.Linear/ConvNd.reset_parameters: kaiming_uniform_(w, a=sqrt(5)), i.e.
    # bound = gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + a**2)) -- U(-b, b) has
    # variance b**2 / 3, which VarianceScaling gives as scale / fan_in with uniform.
    scale, mode, distribution = PRESETS["torch_default"]
    assert (mode, distribution) == ("fan_in", "uniform")
    fan_in = 576
    bound = math.sqrt(2 / (1 + 5)) * math.sqrt(3 / fan_in)
    assert math.isclose(scale / fan_in, bound**2 / 3, rel_tol=1e-12)
