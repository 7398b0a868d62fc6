"""The search methods (kept free of TensorFlow imports, so flags are checked before it loads).

`superkernel` is Single-Path NAS (one level); the others are multi-path mixed ops
(`tfnas.layers.mixed`) learned bi-level: method -> (MixedOp mode, hard).
"""

METHODS = ("superkernel", "softmax", "gumbel", "gumbel_soft", "proxyless")
MIXED_MODES = {"softmax": ("softmax", False), "gumbel": ("gumbel", True),
               "gumbel_soft": ("gumbel", False), "proxyless": ("proxyless", False)}
