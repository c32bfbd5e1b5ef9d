import re

import torch

import resnetlab
from resnetlab.analysis import count_parameters

from .conftest import PROJECT_ROOT


def test_readme_model_table_matches_the_registry():
    text = (PROJECT_ROOT / "README.md").read_text()
    rows = re.findall(
        r"^\| `(\w+)` \| ([\d,]+) \| (\d+) \| (\d+) \| [^|]+ \| ([^|]+) \|$", text, re.MULTILINE
    )
    table = {name: (int(p.replace(",", "")), int(k), int(s), src) for name, p, k, s, src in rows}
    assert list(table) == resnetlab.list_models()
    for name, (params, num_classes, input_size, source) in table.items():
        info = resnetlab.model_info(name)
        assert (info.num_classes, info.input_size, info.source) == (
            num_classes,
            input_size,
            source.strip(),
        )
        with torch.device("meta"):  # shapes only
            assert count_parameters(resnetlab.create_model(name))[0] == params
