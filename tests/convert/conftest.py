import os

# Keras picks its backend once, on import; the tests compare against Keras on PyTorch, the
# only backend the dev extra installs.
os.environ["KERAS_BACKEND"] = "torch"
