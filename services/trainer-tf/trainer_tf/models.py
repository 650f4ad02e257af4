"""Keras builders for every catalog name (imgbench.catalog), matching trainer-pt's networks.

A name means the same network in both frameworks, so parameter counts agree with torchvision/timm
(``imgbench/reference_params.json``) and a pt/tf comparison compares frameworks, not architectures:

- ResNets are built here, not taken from ``keras.applications``: Keras's ResNet50/152 are v1 with
  biased convolutions and the stride in the first 1×1 conv; torchvision's are v1.5 (stride in the 3×3,
  no conv bias). Padding is explicit and symmetric, like PyTorch's, not Keras's lopsided "same".
- MobileNetV3 takes the feature extractor from ``keras.applications`` and adds torchvision's head
  (pool → Linear 576/960 → 1024/1280 → hardswish → dropout → Linear), not Keras's conv head.
- MobileNetV4-Conv-Small and ViT-B/16, ViT-L/16 are compact re-implementations of timm/torchvision.
- Every batch norm uses momentum 0.9 (PyTorch's 0.1): Keras's 0.99/0.999 leaves the moving statistics
  far from the weights after a short run (measured: 8% val top-1 on digits instead of ~94%).

The model input is named ``image`` (NHWC float32, normalized) and the last layer ``logits`` (float32
even under mixed precision), so exports get those names without renaming.

    >>> model = build_model("resnet18", num_classes=10, image_size=32)   # doctest: +SKIP
    >>> count_parameters(model)                                          # doctest: +SKIP
    11181642
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import layers, ops

from imgbench.catalog import get_entry
from imgbench.errors import ImgbenchError

BN_MOMENTUM = 0.9
INPUT_NAME = "image"
LOGITS_NAME = "logits"

# torchvision initializes convolutions with kaiming_normal_(mode="fan_out", nonlinearity="relu").
_CONV_INIT = keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")
# torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weights.
_LINEAR_INIT = keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


def _batch_norm(x, name: str, epsilon: float = 1e-5):
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=epsilon, name=name)(x)


def _conv(x, filters: int, kernel: int, stride: int, name: str, groups: int = 1, use_bias: bool = False):
    """A convolution padded like PyTorch's ``padding=kernel // 2`` (symmetric, also at stride 2)."""
    if stride > 1 and kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    if groups > 1 and groups == x.shape[-1]:
        return layers.DepthwiseConv2D(
            kernel,
            strides=stride,
            padding=padding,
            use_bias=use_bias,
            depthwise_initializer=_CONV_INIT,
            name=name,
        )(x)
    return layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding=padding,
        use_bias=use_bias,
        kernel_initializer=_CONV_INIT,
        name=name,
    )(x)


def _logits(x, num_classes: int):
    # float32 even under a mixed policy: softmax and the loss need the range.
    return layers.Dense(num_classes, kernel_initializer=_LINEAR_INIT, name=LOGITS_NAME, dtype="float32")(x)


# -- ResNet (torchvision v1.5) ---------------------------------------------------------------------
def _basic_block(x, planes: int, stride: int, name: str):
    shortcut = x
    out = _conv(x, planes, 3, stride, f"{name}_conv1")
    out = layers.ReLU(name=f"{name}_relu1")(_batch_norm(out, f"{name}_bn1"))
    out = _batch_norm(_conv(out, planes, 3, 1, f"{name}_conv2"), f"{name}_bn2")
    if stride != 1 or x.shape[-1] != planes:
        shortcut = _batch_norm(_conv(x, planes, 1, stride, f"{name}_downsample"), f"{name}_downsample_bn")
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([out, shortcut]))


def _bottleneck(x, planes: int, stride: int, name: str):
    expansion = 4
    shortcut = x
    out = layers.ReLU(name=f"{name}_relu1")(
        _batch_norm(_conv(x, planes, 1, 1, f"{name}_conv1"), f"{name}_bn1")
    )
    # v1.5: the stride sits in the 3×3 conv.
    out = _conv(out, planes, 3, stride, f"{name}_conv2")
    out = layers.ReLU(name=f"{name}_relu2")(_batch_norm(out, f"{name}_bn2"))
    out = _batch_norm(_conv(out, planes * expansion, 1, 1, f"{name}_conv3"), f"{name}_bn3")
    if stride != 1 or x.shape[-1] != planes * expansion:
        shortcut = _conv(x, planes * expansion, 1, stride, f"{name}_downsample")
        shortcut = _batch_norm(shortcut, f"{name}_downsample_bn")
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([out, shortcut]))


def _resnet(block: Callable, blocks_per_stage: tuple[int, int, int, int]):
    def build(inputs, num_classes: int):
        x = _conv(inputs, 64, 7, 2, "conv1")
        x = layers.ReLU(name="relu")(_batch_norm(x, "bn1"))
        # Zero padding equals PyTorch's -inf padding here: the input is post-ReLU, so ≥ 0.
        x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
        for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_stage, strict=True)):
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                x = block(x, planes, stride, f"layer{stage + 1}_{index}")
        x = layers.GlobalAveragePooling2D(name="avgpool")(x)
        return _logits(x, num_classes)

    return build


# -- MobileNetV3 (keras.applications features + torchvision's classifier) ---------------------------
def _mobilenet_v3(application: Callable, last_channel: int):
    def build(inputs, num_classes: int):
        features = application(
            input_shape=tuple(inputs.shape[1:]),
            include_top=False,
            weights=None,
            include_preprocessing=False,  # inputs arrive normalized, as in torchvision
        )
        # keras.applications pads every stride-2 convolution of an even input on the bottom/right only;
        # torchvision pads k//2 on every side. Re-padded, the two networks compute the same function
        # (shown by tests/trainer_tf/test_parity.py with PyTorch's weights loaded).
        features = keras.models.clone_model(features, input_tensors=inputs, clone_function=_torch_padding)
        _torchvision_mobilenet_init(features)
        # torchvision: Linear layers of MobileNetV3 start at N(0, 0.01) with zero bias.
        head_init = keras.initializers.RandomNormal(stddev=0.01)
        x = layers.GlobalAveragePooling2D(name="avgpool")(features.output)
        x = layers.Dense(last_channel, kernel_initializer=head_init, name="classifier_fc")(x)
        x = layers.Activation("hard_swish", name="classifier_hardswish")(x)
        x = layers.Dropout(0.2, name="classifier_dropout")(x)
        return layers.Dense(num_classes, kernel_initializer=head_init, name=LOGITS_NAME, dtype="float32")(x)

    return build


@keras.saving.register_keras_serializable(package="trainer_tf")
class TorchPaddedConv2D(layers.Conv2D):
    """A Conv2D padded ``torch_padding`` on every side before a valid convolution: PyTorch's
    ``padding=k // 2`` (Keras's "same" at stride 2 pads only the bottom/right of an even input)."""

    def __init__(self, torch_padding: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.torch_padding = int(torch_padding)

    def call(self, inputs):
        pad = self.torch_padding
        return super().call(ops.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]]))

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis in (1, 2):
            shape[axis] = None if shape[axis] is None else shape[axis] + 2 * self.torch_padding
        return super().compute_output_shape(tuple(shape))

    def get_config(self) -> dict:
        return {**super().get_config(), "torch_padding": self.torch_padding}


def _torch_padding(layer: layers.Layer) -> layers.Layer:
    """clone_model's hook: every stride-2 convolution of keras.applications padded like torchvision's."""
    config = layer.get_config()
    if isinstance(layer, layers.ZeroPadding2D):
        # correct_pad gives ((k//2 - 1, k//2), ...) for even inputs: the right side is k//2.
        (_, bottom), (_, right) = config["padding"]
        return layers.ZeroPadding2D(((bottom, bottom), (right, right)), name=config["name"])
    if type(layer) is layers.Conv2D and max(layer.strides) > 1 and layer.padding == "same":
        return TorchPaddedConv2D(torch_padding=layer.kernel_size[0] // 2, **{**config, "padding": "valid"})
    return layer.__class__.from_config(config)


def _torchvision_mobilenet_init(features: keras.Model) -> None:
    """Re-draw keras.applications' Glorot-initialized convolutions the way torchvision's MobileNetV3 does:
    ``kaiming_normal_(mode="fan_out")`` with torch's fan-out (out channels × kernel area, depthwise too)
    and zero biases, so both frameworks start from the same distribution."""
    for layer in features.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            kh, kw, channels, _ = layer.kernel.shape
            fan_out = channels * kh * kw
        elif isinstance(layer, layers.Conv2D):
            kh, kw, _, out = layer.kernel.shape
            fan_out = out * kh * kw
        else:
            continue
        # Drawn through Keras's seeded generator, so keras.utils.set_random_seed makes it reproducible.
        initializer = keras.initializers.RandomNormal(stddev=float(np.sqrt(2.0 / fan_out)))
        layer.kernel.assign(initializer(layer.kernel.shape))
        if layer.use_bias:
            layer.bias.assign(np.zeros(layer.bias.shape, dtype="float32"))


# -- MobileNetV4-Conv-Small (timm mobilenetv4_conv_small) -------------------------------------------
def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, act: bool = True, groups: int = 1):
    x = _batch_norm(_conv(x, filters, kernel, stride, name, groups=groups), f"{name}_bn")
    return layers.ReLU(name=f"{name}_relu")(x) if act else x


def _universal_inverted_residual(x, out: int, start: int, mid: int, stride: int, expand: float, name: str):
    """timm's UniversalInvertedResidual: optional depthwise start, 1×1 expand, optional depthwise mid,
    1×1 project, residual when shapes allow (no layer scale in the conv variants: counts match timm)."""
    inputs, channels = x, x.shape[-1]
    if start:
        x = _conv_bn(x, channels, start, 1 if mid else stride, f"{name}_dw_start", act=False, groups=channels)
    hidden = int(channels * expand)
    x = _conv_bn(x, hidden, 1, 1, f"{name}_pw_exp")
    if mid:
        x = _conv_bn(x, hidden, mid, stride, f"{name}_dw_mid", groups=hidden)
    x = _conv_bn(x, out, 1, 1, f"{name}_pw_proj", act=False)
    if stride == 1 and channels == out:
        x = layers.Add(name=f"{name}_add")([inputs, x])
    return x


# (out, dw start kernel, dw mid kernel, stride, expansion) per block, from timm's arch_def "conv_small".
_MNV4_CONV_SMALL_UIR = (
    [(96, 5, 5, 2, 3.0)]
    + [(96, 0, 3, 1, 2.0)] * 4
    + [(96, 3, 0, 1, 4.0)]
    + [(128, 3, 3, 2, 6.0), (128, 5, 5, 1, 4.0), (128, 0, 5, 1, 4.0), (128, 0, 5, 1, 3.0)]
    + [(128, 0, 3, 1, 4.0)] * 2
)


def _mobilenetv4_conv_small(inputs, num_classes: int):
    x = _conv_bn(inputs, 32, 3, 2, "stem")
    for index, (filters, kernel, stride) in enumerate(((32, 3, 2), (32, 1, 1), (96, 3, 2), (64, 1, 1))):
        x = _conv_bn(x, filters, kernel, stride, f"cn{index}")
    for index, (out, start, mid, stride, expand) in enumerate(_MNV4_CONV_SMALL_UIR):
        x = _universal_inverted_residual(x, out, start, mid, stride, expand, f"uir{index}")
    x = _conv_bn(x, 960, 1, 1, "cn_last")
    # timm's head: pool, then a 1×1 conv (no bias) + norm + act on the pooled vector, then Linear.
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    x = layers.Dense(1280, use_bias=False, kernel_initializer=_LINEAR_INIT, name="conv_head")(x)
    x = layers.ReLU(name="head_relu")(_batch_norm(x, "norm_head"))
    return _logits(x, num_classes)


# -- ViT (torchvision VisionTransformer) -------------------------------------------------------------
def _vit(hidden: int, depth: int, heads: int, mlp_dim: int, patch: int = 16):
    def build(inputs, num_classes: int):
        size = inputs.shape[1]
        if size % patch:
            raise ImgbenchError(f"ViT needs an image size divisible by {patch}; got --image-size {size}")
        x = layers.Conv2D(hidden, patch, strides=patch, kernel_initializer=_LINEAR_INIT, name="conv_proj")(
            inputs
        )
        x = layers.Reshape((-1, hidden), name="patches")(x)
        x = ClassTokenAndPosition(name="embedding")(x)
        for index in range(depth):
            name = f"encoder_layer_{index}"
            y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln_1")(x)
            y = layers.MultiHeadAttention(heads, hidden // heads, name=f"{name}_self_attention")(y, y)
            x = layers.Add(name=f"{name}_add_1")([x, y])
            y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln_2")(x)
            y = layers.Dense(mlp_dim, name=f"{name}_mlp_0")(y)
            y = layers.Activation(_exact_gelu, name=f"{name}_gelu")(y)
            y = layers.Dense(hidden, name=f"{name}_mlp_3")(y)
            x = layers.Add(name=f"{name}_add_2")([x, y])
        x = layers.LayerNormalization(epsilon=1e-6, name="encoder_ln")(x)
        x = ClassTokenOutput(name="class_token_output")(x)
        return _logits(x, num_classes)

    return build


def _exact_gelu(x):
    # torch.nn.GELU's default is the exact erf form, not the tanh approximation.
    return ops.gelu(x, approximate=False)


class ClassTokenAndPosition(layers.Layer):
    """Prepends the class token and adds the learned position embedding (torchvision's Encoder)."""

    def build(self, input_shape) -> None:
        tokens, hidden = input_shape[1], input_shape[2]
        self.class_token = self.add_weight(shape=(1, 1, hidden), initializer="zeros", name="class_token")
        self.pos_embedding = self.add_weight(
            shape=(1, tokens + 1, hidden),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="pos_embedding",
        )

    def call(self, x):
        batch = ops.shape(x)[0]
        class_token = ops.cast(ops.broadcast_to(self.class_token, (batch, 1, x.shape[-1])), x.dtype)
        return ops.concatenate([class_token, x], axis=1) + ops.cast(self.pos_embedding, x.dtype)


class ClassTokenOutput(layers.Layer):
    def call(self, x):
        return x[:, 0]


_BUILDERS: dict[str, Callable] = {
    "resnet18": _resnet(_basic_block, (2, 2, 2, 2)),
    "resnet50": _resnet(_bottleneck, (3, 4, 6, 3)),
    "resnet152": _resnet(_bottleneck, (3, 8, 36, 3)),
    "mobilenet_v3_small": _mobilenet_v3(keras.applications.MobileNetV3Small, 1024),
    "mobilenet_v3_large": _mobilenet_v3(keras.applications.MobileNetV3Large, 1280),
    "mobilenetv4_conv_small": _mobilenetv4_conv_small,
    "vit_b_16": _vit(hidden=768, depth=12, heads=12, mlp_dim=3072),
    "vit_l_16": _vit(hidden=1024, depth=24, heads=16, mlp_dim=4096),
}


def architectures() -> list[str]:
    return list(_BUILDERS)


def build_model(
    architecture: str,
    num_classes: int,
    image_size: int | None,
    bn_momentum: float | None = BN_MOMENTUM,
    dropout: float | None = None,
) -> keras.Model:
    """A randomly initialized Keras model for a catalog name, NHWC input named ``image``.
    ``bn_momentum`` is Keras's (the moving average keeps this share): PyTorch's 0.1 is Keras's 0.9;
    None keeps each layer's own (``--bn-momentum native``). ``dropout`` sets every dropout layer's rate
    (None keeps the architecture's). ``image_size=None`` takes any height and width (dynamic-shape
    exports; architectures with global pooling only, ``imgbench.dynamic_shapes``).

    >>> build_model("mobilenet_v3_small", 10, 32).output_names   # doctest: +SKIP
    ['logits']
    """
    entry = get_entry(architecture)  # unknown names fail here, listing the catalog
    if num_classes < 2:
        raise ImgbenchError(f"a classifier needs at least 2 classes, got {num_classes}")
    if image_size is not None and image_size < entry.min_image_size:
        raise ImgbenchError(f"{architecture} needs --image-size ≥ {entry.min_image_size}, got {image_size}")
    inputs = keras.Input(shape=(image_size, image_size, 3), name=INPUT_NAME, dtype="float32")  # None: any
    outputs = _BUILDERS[architecture](inputs, num_classes)
    model = keras.Model(inputs, outputs, name=f"tf_{architecture}")
    for layer in _all_layers(model):
        if isinstance(layer, layers.BatchNormalization) and bn_momentum is not None:
            layer.momentum = bn_momentum  # keras.applications hard-codes 0.999
        if isinstance(layer, layers.Dropout) and dropout is not None:
            layer.rate = dropout
    return model


def _all_layers(model: keras.Model) -> list[layers.Layer]:
    found: list[layers.Layer] = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(_all_layers(layer))
    return found


def count_parameters(model: keras.Model) -> int:
    """Trainable parameters, the figure torch's ``sum(p.numel() for p in model.parameters())`` gives
    (batch-norm moving statistics are buffers in PyTorch, non-trainable weights in Keras)."""
    return int(sum(int(ops.size(w)) for w in model.trainable_weights))
