"""A Keras 2 functional model saved as HDF5, rebuilt as a torch network (no TensorFlow).

A Keras 2 ``.hdf5`` file holds the architecture as JSON in its ``model_config`` attribute and
each layer's weights under ``model_weights/LAYER/`` in the order its ``weight_names``
attribute lists. :func:`load_keras_model` reads both with h5py and builds the graph layer by
layer, so the torch network is the file's own: nothing about it is assumed here.

The layers the DL-L8S2-UV cloud U-Nets use are supported: ``InputLayer``, ``Conv2D``,
``SeparableConv2D`` (a depthwise convolution without bias, then a pointwise one with it),
``Conv2DTranspose``, ``BatchNormalization`` (inference: moving statistics, Keras's epsilon),
``Activation`` and conv activations (linear, relu, sigmoid), ``MaxPooling2D`` and
``Concatenate``, all ``channels_last``, stride 1 or equal to the kernel, no dilation. Anything
else stops with one line naming the file and the layer.

Layouts: Keras keeps images channels-last and kernels as ``(kh, kw, in, out)`` (transposed
convolutions ``(kh, kw, out, in)``, depthwise ``(kh, kw, in, multiplier)``); torch wants
``(out, in, kh, kw)`` (transposed ``(in, out, kh, kw)``). Both frameworks' transposed
convolution is the gradient of a cross-correlation, so kernels are not flipped. The torch
network takes and returns channels-first tensors; a concatenation along Keras's channel
axis becomes one along torch's. 'same' padding of an odd kernel at stride 1 pads (k-1)/2
on every side, exactly as Keras does; a transposed convolution whose kernel equals its
stride needs no padding for 'same'.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cloudkit.errors import CheckpointError

_ACTIVATIONS = {"linear": None, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


@dataclass(frozen=True)
class _Node:
    """One layer of the graph: its name, the names of its inputs, and its torch module."""

    name: str
    inputs: tuple[str, ...]


class KerasGraph(nn.Module):
    """A single-input, single-output Keras functional graph as torch modules.

    ``forward`` takes ``(N, C, H, W)`` and returns ``(N, C_out, H, W)``; spatial sizes must
    survive the graph's pooling and upsampling (for a U-Net: multiples of ``2**levels``)."""

    def __init__(
        self, nodes: Sequence[_Node], layers: dict[str, nn.Module], source: str, output: str
    ):
        super().__init__()
        self.nodes = tuple(nodes)
        self.layers = nn.ModuleDict(layers)
        self.source = source
        self.output = output
        #: the input channels the first layer expects
        self.in_channels = 0
        #: total downsampling of the graph (product of pooling strides along its deepest path)
        self.multiple = 1

    def forward(self, x: Tensor) -> Tensor:
        values: dict[str, Tensor] = {self.source: x}
        for node in self.nodes:
            args = [values[name] for name in node.inputs]
            layer = self.layers[node.name]
            values[node.name] = layer(*args)
        return values[self.output]


class _Concat(nn.Module):
    def forward(self, *xs: Tensor) -> Tensor:
        return torch.cat(xs, dim=1)


class _MaxPool(nn.Module):
    """Keras MaxPooling2D with 'valid' padding: torch's own floor rule."""

    def __init__(self, size: tuple[int, int], stride: tuple[int, int]):
        super().__init__()
        self.size, self.stride = size, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.size, self.stride)


def load_keras_model(path: Path) -> KerasGraph:
    """The torch network of the Keras 2 HDF5 file ``path``, in eval mode, weights loaded.

    One-line :class:`CheckpointError` naming the file when it cannot be read, is not a Keras
    functional model, or holds a layer this reader does not build."""
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({err})") from None
    with f:
        raw = f.attrs.get("model_config")
        if raw is None or "model_weights" not in f:
            raise CheckpointError(
                f"{path}: no model_config attribute or model_weights group; expected a Keras 2 "
                "model saved with model.save(...h5)"
            )
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        weights = {
            name: _layer_weights(f["model_weights"], name)
            for name in f["model_weights"]
            if isinstance(f["model_weights"][name], h5py.Group)
        }
    return build_graph(config, weights, str(path))


def _layer_weights(group, name: str) -> dict[str, np.ndarray]:
    """``{short name: array}`` of one layer group, e.g. ``{"kernel": ..., "bias": ...}``."""
    out = {}
    for full in group[name].attrs.get("weight_names", []):
        full = full.decode() if isinstance(full, bytes) else str(full)
        short = full.rsplit("/", 1)[-1].split(":")[0]
        out[short] = np.asarray(group[name][full], dtype=np.float32)
    return out


def build_graph(config: dict, weights: dict[str, dict[str, np.ndarray]], what: str) -> KerasGraph:
    """The torch graph of a Keras ``model_config`` dict and its layers' ``weights``."""
    if config.get("class_name") not in ("Model", "Functional"):
        raise CheckpointError(
            f"{what}: a Keras {config.get('class_name')!r}, not a functional Model"
        )
    body = config["config"]
    inputs, outputs = body["input_layers"], body["output_layers"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise CheckpointError(
            f"{what}: {len(inputs)} inputs and {len(outputs)} outputs; expected 1"
        )
    nodes: list[_Node] = []
    layers: dict[str, nn.Module] = {}
    channels: dict[str, int] = {}
    scale: dict[str, int] = {}
    source = inputs[0][0]
    for layer in body["layers"]:
        kind, name, cfg = layer["class_name"], layer["name"], layer["config"]
        if kind == "InputLayer":
            shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
            channels[name], scale[name] = int(shape[-1]), 1
            continue
        parents = tuple(node[0] for node in layer["inbound_nodes"][0])
        where = f"{what}: layer {name} ({kind})"
        _check_channels_last(cfg, where)
        cin = [channels[p] for p in parents]
        module, cout = _build_layer(kind, cfg, cin, weights.get(name, {}), where)
        if cfg.get("trainable") is False:  # e.g. the frozen 1x1 `normalization` conv
            module.requires_grad_(False)
        nodes.append(_Node(name, parents))
        layers[name] = module
        channels[name] = cout
        # downsampling at this node: what an input's height and width must be a multiple of
        down = max(scale[p] for p in parents)
        if kind == "MaxPooling2D":
            down *= _pair(cfg.get("strides") or cfg["pool_size"])[0]
        elif kind == "Conv2DTranspose":
            down = max(1, down // _pair(cfg["strides"])[0])
        scale[name] = down
    graph = KerasGraph(nodes, layers, source, outputs[0][0])
    graph.in_channels = channels[source]
    graph.multiple = max(scale.values())
    return graph.eval()


def _check_channels_last(cfg: dict, where: str) -> None:
    fmt = cfg.get("data_format", "channels_last")
    if fmt != "channels_last":
        raise CheckpointError(f"{where}: data_format {fmt}; only channels_last is read")
    if "dilation_rate" in cfg and tuple(_pair(cfg["dilation_rate"])) != (1, 1):
        raise CheckpointError(f"{where}: dilation {cfg['dilation_rate']}; only 1 is read")


def _build_layer(
    kind: str, cfg: dict, cin: list[int], w: dict[str, np.ndarray], where: str
) -> tuple[nn.Module, int]:
    """(torch module, output channels) of one Keras layer."""
    if kind == "Conv2D":
        conv = _conv(cfg, cin[0], w["kernel"], w.get("bias"), where)
        return _with_activation(conv, cfg, where), conv.out_channels
    if kind == "SeparableConv2D":
        depthwise = w["depthwise_kernel"]  # (kh, kw, in, multiplier)
        mult = int(cfg.get("depth_multiplier", 1))
        kh, kw = depthwise.shape[:2]
        dw = nn.Conv2d(cin[0], cin[0] * mult, (kh, kw), groups=cin[0], bias=False)
        dw.padding = _same_padding(cfg, (kh, kw), where)
        _check_stride(cfg, (1, 1), where)
        # keras: output channel c * multiplier + m comes from input c; torch's grouped conv too
        _set(dw.weight, np.transpose(depthwise, (2, 3, 0, 1)).reshape(-1, 1, kh, kw), where)
        pointwise = _conv(
            {"padding": "valid", "strides": (1, 1)},
            cin[0] * mult,
            w["pointwise_kernel"],
            w.get("bias"),
            where,
        )
        module = nn.Sequential(dw, pointwise)
        return _with_activation(module, cfg, where), pointwise.out_channels
    if kind == "Conv2DTranspose":
        kernel = w["kernel"]  # (kh, kw, out, in)
        kh, kw, cout, cin_k = kernel.shape
        stride = _pair(cfg["strides"])
        if cin_k != cin[0] or (kh, kw) != stride or cfg.get("output_padding") is not None:
            raise CheckpointError(
                f"{where}: only transposed convolutions whose kernel equals the stride are "
                f"read (kernel {kh}x{kw}, stride {stride}, {cin_k} vs {cin[0]} inputs)"
            )
        up = nn.ConvTranspose2d(cin_k, cout, (kh, kw), stride=stride, bias="bias" in w)
        _set(up.weight, np.transpose(kernel, (3, 2, 0, 1)), where)
        if "bias" in w:
            assert up.bias is not None  # made with one
            _set(up.bias, w["bias"], where)
        return _with_activation(up, cfg, where), cout
    if kind == "BatchNormalization":
        axis = cfg["axis"]
        if (axis if isinstance(axis, list) else [axis]) not in ([3], [-1]):
            raise CheckpointError(f"{where}: batch norm over axis {axis}; expected the channels")
        bn = nn.BatchNorm2d(cin[0], eps=float(cfg["epsilon"]))
        with torch.no_grad():
            bn.weight.fill_(1.0)
            bn.bias.zero_()
        if cfg.get("scale", True):
            _set(bn.weight, w["gamma"], where)
        if cfg.get("center", True):
            _set(bn.bias, w["beta"], where)
        # a BatchNorm2d tracks its running statistics unless told not to
        assert bn.running_mean is not None and bn.running_var is not None
        _set(bn.running_mean, w["moving_mean"], where)
        _set(bn.running_var, w["moving_variance"], where)
        return bn, cin[0]
    if kind == "Activation":
        return _activation(cfg.get("activation", "linear"), where), cin[0]
    if kind == "MaxPooling2D":
        size = _pair(cfg["pool_size"])
        stride = _pair(cfg.get("strides") or cfg["pool_size"])
        if cfg.get("padding", "valid") != "valid":
            raise CheckpointError(f"{where}: max pooling padding {cfg['padding']}; only valid")
        return _MaxPool(size, stride), cin[0]
    if kind == "Concatenate":
        if cfg.get("axis") not in (3, -1):
            raise CheckpointError(f"{where}: concatenation along axis {cfg.get('axis')}")
        return _Concat(), sum(cin)
    raise CheckpointError(f"{where}: this layer type is not read (no TensorFlow here)")


def _conv(
    cfg: dict, cin: int, kernel: np.ndarray, bias: np.ndarray | None, where: str
) -> nn.Conv2d:
    kh, kw, kin, cout = kernel.shape
    if kin != cin:
        raise CheckpointError(f"{where}: kernel takes {kin} channels but {cin} arrive")
    _check_stride(cfg, (1, 1), where)
    conv = nn.Conv2d(cin, cout, (kh, kw), bias=bias is not None)
    conv.padding = _same_padding(cfg, (kh, kw), where)
    _set(conv.weight, np.transpose(kernel, (3, 2, 0, 1)), where)
    if bias is not None:
        assert conv.bias is not None  # made with one
        _set(conv.bias, bias, where)
    return conv


def _with_activation(module: nn.Module, cfg: dict, where: str) -> nn.Module:
    act = _activation(cfg.get("activation", "linear"), where)
    return module if isinstance(act, nn.Identity) else nn.Sequential(module, act)


def _activation(name: str, where: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise CheckpointError(f"{where}: activation {name!r}; read are {', '.join(_ACTIVATIONS)}")
    made = _ACTIVATIONS[name]
    return nn.Identity() if made is None else made()


def _same_padding(cfg: dict, kernel: tuple[int, int], where: str) -> tuple[int, int]:
    padding = cfg.get("padding", "valid")
    if padding == "valid":
        return (0, 0)
    if padding == "same" and all(k % 2 == 1 for k in kernel):
        return (kernel[0] // 2, kernel[1] // 2)
    raise CheckpointError(f"{where}: padding {padding} with kernel {kernel}; not read")


def _check_stride(cfg: dict, expected: tuple[int, int], where: str) -> None:
    stride = _pair(cfg.get("strides", (1, 1)))
    if stride != expected:
        raise CheckpointError(f"{where}: stride {stride}; only {expected} is read here")


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def _set(target: Tensor, value: np.ndarray, where: str) -> None:
    if tuple(target.shape) != tuple(value.shape):
        raise CheckpointError(
            f"{where}: weights of shape {tuple(value.shape)} where {tuple(target.shape)} fit"
        )
    with torch.no_grad():
        target.copy_(torch.from_numpy(np.ascontiguousarray(value)))
