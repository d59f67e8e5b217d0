"""Writes examples/small_cnn.npz: the state dict of a tiny ResNet-style CNN, PyTorch layout,
with its weights zeroed as if stripped. `vsconf apply examples/small_cnn.npz configs/he_cnn.yaml`
fills it.  Run from the repository root: python examples/make_small_cnn.py
"""

from pathlib import Path

import numpy as np


def bn(prefix: str, channels: int) -> dict[str, np.ndarray]:
    return {
        f"{prefix}.weight": np.zeros(channels, np.float32),
        f"{prefix}.bias": np.zeros(channels, np.float32),
        f"{prefix}.running_mean": np.zeros(channels, np.float32),
        f"{prefix}.running_var": np.zeros(channels, np.float32),
        f"{prefix}.num_batches_tracked": np.zeros((), np.int64),
    }


def state_dict() -> dict[str, np.ndarray]:
    arrays = {"conv1.weight": np.zeros((16, 3, 3, 3), np.float32)}
    arrays.update(bn("bn1", 16))
    for block in ("layer1.0", "layer1.1"):
        arrays[f"{block}.conv1.weight"] = np.zeros((16, 16, 3, 3), np.float32)
        arrays.update(bn(f"{block}.bn1", 16))
        arrays[f"{block}.conv2.weight"] = np.zeros((16, 16, 3, 3), np.float32)
        arrays.update(bn(f"{block}.bn2", 16))
    arrays["layer2.0.conv1.weight"] = np.zeros((32, 16, 3, 3), np.float32)
    arrays.update(bn("layer2.0.bn1", 32))
    arrays["layer2.0.downsample.0.weight"] = np.zeros((32, 16, 1, 1), np.float32)
    arrays.update(bn("layer2.0.downsample.1", 32))
    arrays["fc.weight"] = np.zeros((10, 32), np.float32)
    arrays["fc.bias"] = np.zeros(10, np.float32)
    return arrays


if __name__ == "__main__":
    np.savez(Path(__file__).with_name("small_cnn.npz"), **state_dict())
