import os
import subprocess
import sys

import pytest

PRINT_SETTINGS = (
    "import os, resnetlab; "
    "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
)


def _settings_after_import(**env: str) -> str:
    settings = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
    clean = {k: v for k, v in os.environ.items() if k not in settings}
    result = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "PASSIVE None"),  # threads wait passively by default
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE None"),  # the user's choice stands
        ({"GOMP_SPINCOUNT": "3000"}, "None 3000"),  # so does a spin count
        ({"KMP_BLOCKTIME": "1"}, "None None"),
    ],
)
def test_openmp_threads_wait_passively_unless_the_user_chose(env, expected):
    assert _settings_after_import(**env) == expected
