"""The Python API's arguments: the wrong kind of value is one line naming it."""

import numpy as np
import pytest
from PIL import Image

import resnetlab


def test_the_python_api_names_an_argument_of_the_wrong_type(tmp_path):
    model = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), model, input_size=8)
    cases = [
        (lambda: resnetlab.predict(model, [Image.new("RGB", (8, 8))]), "each image to predict"),
        (lambda: resnetlab.load_model(None), "the model file must be a path"),
        (lambda: resnetlab.evaluate(123, "digits"), "the model file must be a path"),
        (lambda: resnetlab.train({"data": "digits"}), "not a dict; unpack it: train(**options)"),
        (lambda: resnetlab.train(resume=123), "resume must be a path (str or pathlib.Path)"),
        (lambda: resnetlab.read_model_meta(np.zeros(3)), "got ndarray"),
    ]
    for call, says in cases:
        with pytest.raises(resnetlab.ResnetlabError) as error:
            call()
        assert says in str(error.value)


@pytest.mark.parametrize("count", [-3, "10", 2.5, True])
def test_a_class_count_that_is_not_a_whole_number_from_0_is_refused(count):
    with pytest.raises(resnetlab.ResnetlabError, match="num_classes must be a whole number"):
        resnetlab.create_model("resnet8", num_classes=count)


def test_any_integer_type_is_a_class_count():
    assert resnetlab.create_model("resnet8", num_classes=np.int64(4)).num_classes == 4
    assert resnetlab.create_model("resnet8", num_classes=0).num_classes == 0  # features only
