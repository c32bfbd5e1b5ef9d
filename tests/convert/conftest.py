import os

# Keras picks its backend once, on import; the tests compare against Keras on PyTorch, the
# only backend the dev extra installs.
os.environ["KERAS_BACKEND"] = "torch"
# And its device then: the CPU, as resnetlab's side of every comparison (Keras would take a
# GPU where there is one, and TF32 convolutions there differ by more than the tolerances).
os.environ["KERAS_TORCH_DEVICE"] = "cpu"
