"""Export: a model file to ONNX, TorchScript or a torch.export program, each checked in the
runtime that will run it; ``OnnxModel`` runs an exported ONNX file where a model file goes.

ONNX needs the ``export`` extra (onnx, onnxscript, onnxruntime); without it the ONNX paths
say in one line what to install. TorchScript and exported programs need only torch.
"""

from .exporter import FORMATS, TOLERANCE, DeployedModel, ExportReport, export_model
from .runtime import EXTRA_FILE, OnnxModel, import_extra, in_batches, read_deploy_meta

__all__ = [
    "EXTRA_FILE",
    "FORMATS",
    "TOLERANCE",
    "DeployedModel",
    "ExportReport",
    "OnnxModel",
    "export_model",
    "import_extra",
    "in_batches",
    "read_deploy_meta",
]
