"""The search methods (kept free of TensorFlow imports, so flags are checked before it loads).

`superkernel` is Single-Path NAS (one level); the others are multi-path mixed ops
(`tfnas.layers.mixed`) learned bi-level: method -> (MixedOp mode, hard). `proxyless_reinforce`
runs the proxyless mixed op and learns α by REINFORCE (ProxylessNAS Eq. 8): the reward of a
sampled network need not be differentiable (e.g. a measured latency).
"""

METHODS = ("superkernel", "softmax", "gumbel", "gumbel_soft", "proxyless", "proxyless_reinforce")
MIXED_MODES = {"softmax": ("softmax", False), "gumbel": ("gumbel", True),
               "gumbel_soft": ("gumbel", False), "proxyless": ("proxyless", False),
               "proxyless_reinforce": ("proxyless", False)}
# methods whose α learn from rewards of sampled networks (REINFORCE), not from gradients
REINFORCE_METHODS = ("proxyless_reinforce",)
PROXYLESS_METHODS = ("proxyless", "proxyless_reinforce")
