"""Model classes and the checkpoint format shared by every trained model of the pipeline."""

from .checkpoint import CheckpointError, build_model, load_checkpoint, save_checkpoint
from .resnet import CifarResNet

__all__ = ["CheckpointError", "CifarResNet", "build_model", "load_checkpoint", "save_checkpoint"]
