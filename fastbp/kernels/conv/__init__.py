"""The parts of a convolution BLAS does not do: unfolding, pooling, and the fused passes.

* :mod:`.columns`: im2col / col2im in the channel-major layout (grouped convolutions);
* :mod:`.pixels`: the pixel-major layout of the groups == 1 convolution, and the bias +
  activation passes after its product;
* :mod:`.pool`: max-pool forward and backward with the window's argmax;
* :mod:`.fused`: convolution -> ReLU -> 2x2 max-pool in one pass over the product.

Each public kernel has a NumPy twin ``name_numpy`` with the same signature.

Example
-------
>>> import numpy as np
>>> from fastbp.kernels.conv import im2col, col2im
>>> x = np.arange(16.0).reshape(1, 1, 4, 4)
>>> cols = im2col(x, (2, 2), (2, 2), (0, 0), (1, 1), (2, 2))
>>> cols.shape
(1, 2, 2, 1, 2, 2)
>>> cols[0, 0, 0, 0]
array([[ 0.,  2.],
       [ 8., 10.]])
>>> col2im(cols, (1, 1, 4, 4), (2, 2), (0, 0), (1, 1)).sum() == x.sum()
np.True_
"""

from __future__ import annotations

from .columns import col2im, col2im_numpy, im2col, im2col_numpy
from .fused import (
    conv_relu_pool,
    conv_relu_pool_backward,
    conv_relu_pool_backward_numpy,
    conv_relu_pool_numpy,
)
from .pixels import (
    col2im_pixels,
    col2im_pixels_numpy,
    conv_bias_act,
    conv_bias_act_backward,
    conv_bias_act_backward_numpy,
    conv_bias_act_channels,
    conv_bias_act_channels_backward,
    conv_bias_act_channels_backward_numpy,
    conv_bias_act_channels_numpy,
    conv_bias_act_numpy,
    im2col_pixels,
    im2col_pixels_numpy,
    matmul_into,
)
from .pool import (
    max_pool2d_backward,
    max_pool2d_backward_numpy,
    max_pool2d_forward,
    max_pool2d_forward_numpy,
)

__all__ = [
    "col2im",
    "col2im_numpy",
    "col2im_pixels",
    "col2im_pixels_numpy",
    "conv_bias_act",
    "conv_bias_act_backward",
    "conv_bias_act_backward_numpy",
    "conv_bias_act_channels",
    "conv_bias_act_channels_backward",
    "conv_bias_act_channels_backward_numpy",
    "conv_bias_act_channels_numpy",
    "conv_bias_act_numpy",
    "conv_relu_pool",
    "conv_relu_pool_backward",
    "conv_relu_pool_backward_numpy",
    "conv_relu_pool_numpy",
    "im2col",
    "im2col_numpy",
    "im2col_pixels",
    "im2col_pixels_numpy",
    "matmul_into",
    "max_pool2d_backward",
    "max_pool2d_backward_numpy",
    "max_pool2d_forward",
    "max_pool2d_forward_numpy",
]
