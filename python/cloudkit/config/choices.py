"""The fixed choices of the options (``str`` enums: the CLI shows and parses their values)."""

from __future__ import annotations

import enum


class Method(str, enum.Enum):
    """Self-supervised pretraining method."""

    moco = "moco"
    deepcluster = "deepcluster"


class Views(str, enum.Enum):
    """How the two views of a training sample are made."""

    two_augmentations = "two-augmentations"  # two augmentations of the same tile
    cloudiness_pair = "cloudiness-pair"  # two tiles of the same cloudiness bin (needs labels)


class Device(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Arch(str, enum.Enum):
    """Encoder architecture (cloudkit.models.archs): torchvision networks, no pretrained
    weights."""

    resnet18 = "resnet18"  # the paper's and the default
    resnet18_narrow = "resnet18_narrow"  # ResNet-18 under a narrower U-Net decoder
    mobilenet_v3_large = "mobilenet_v3_large"  # light: about a quarter of ResNet-18's parameters
    efficientnet_b0 = "efficientnet_b0"
    regnet_y_400mf = "regnet_y_400mf"


class Shadows(str, enum.Enum):
    """Which cloud shadows a mask keeps (cloudkit.geometry.shadows)."""

    geometric = "geometric"  # only those a cloud of the scene (or beyond its edge) casts
    model = "model"  # every pixel the model calls shadow


class Decode(str, enum.Enum):
    """How JPEG 2000 bands that are averaged down are decoded (cloudkit.io.grid)."""

    full = "full"  # every pixel, then area-averaged: bit-exact
    reduced = "reduced"  # the codestream's coarser resolution levels: about a quarter the cost


class TaskName(str, enum.Enum):
    """What the segmentation model predicts (classes in cloudkit.data.tasks)."""

    cloud = "cloud"  # clear vs thick or thin cloud
    shadow = "shadow"  # no shadow vs cloud shadow
    joint = "joint"  # clear vs cloud or shadow
    multi = "multi"  # clear, thick cloud, thin cloud, cloud shadow


class BestBy(str, enum.Enum):
    """Which epoch of a fine-tuning is its best checkpoint."""

    iou = "iou"  # the highest val IoU (the paper's)
    loss = "loss"  # the lowest val loss (what early stopping watches): steadier on few tiles


class ShadowPlacement(str, enum.Enum):
    """Where a synthetic cloud's shadow falls in a training crop (data/synthetic_clouds.py)."""

    sun = "sun"  # away from the tile's scene's sun by height x tan(zenith): none off the crop
    random = "random"  # any direction, up to half a crop away: a shadow for most clouds


class Veils(str, enum.Enum):
    """How synthetic thin clouds are drawn and labelled (data/synthetic_clouds.py)."""

    water = "water"  # thin water clouds, labelled from 0.3 opaque: the shipped model's
    ice = "ice"  # cirrus: bright at 1.38 um, darker in the SWIR, labelled from 0.2, more often


class Head(str, enum.Enum):
    """Segmentation head (cloudkit.models.segmentation)."""

    unet = "unet"  # U-Net decoder on the strided encoder: the efficient default
    light = "light"  # feature pyramid to 1/4, bilinear logits: fastest whole-scene prediction
    paper = "paper"  # every stride 1 + Conv3x3/InstanceNorm/Conv1x1 (the paper's; very slow)
