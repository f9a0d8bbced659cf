"""Model zoo. Every builder takes ``activation=`` (text, Keras name, or layer factory)."""

from .gpt import GPT_CONFIGS, gpt, mini_gpt, small_gpt, tiny_gpt
from .kecam import coatnet0, coatnet_t, mobilevit_v2_050
from .registry import KECAM_MODELS, LANGUAGE_MODELS, MODELS, build_model
from .resnet import resnet_depth_config, resnet_v1, resnet_v2
from .small import all_cnn_c, mnist1d_cnn, mnist1d_mlp
from .transformer_layers import ClassToken, PositionEmbedding, TiedEmbedding
from .vit import VIT_CONFIGS, LocalitySelfAttention, vit, vit_small, vit_tiny
from .wrn import wide_resnet

__all__ = ["MODELS", "LANGUAGE_MODELS", "KECAM_MODELS", "build_model", "all_cnn_c",
           "mnist1d_cnn", "mnist1d_mlp", "resnet_v1", "resnet_v2", "resnet_depth_config",
           "wide_resnet", "vit", "vit_tiny", "vit_small", "VIT_CONFIGS", "gpt", "mini_gpt",
           "tiny_gpt", "small_gpt", "GPT_CONFIGS", "coatnet0", "coatnet_t", "mobilevit_v2_050",
           "LocalitySelfAttention", "ClassToken", "PositionEmbedding", "TiedEmbedding"]
