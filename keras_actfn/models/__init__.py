"""Model zoo. Every builder takes ``activation=`` (text, Keras name, or layer factory)."""

from .resnet import resnet_depth_config, resnet_v1
from .registry import MODELS, build_model
from .small import all_cnn_c, mnist1d_cnn, mnist1d_mlp

__all__ = ["MODELS", "build_model", "all_cnn_c", "mnist1d_cnn", "mnist1d_mlp", "resnet_v1", "resnet_depth_config"]
