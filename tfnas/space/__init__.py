"""Search spaces, candidate ops, architectures and layer signatures (data, not layer code).

- `ops`: `Op` (MBConv k x e, or skip) and `LayerSignature` with exact params / FLOPs.
- `spaces`: `SearchSpace` and the presets (`single_path`, `proxyless_mobile`, `cifar`, `tiny`).
- `architecture`: `Architecture`, one op per searchable layer: JSON, one-hot, sampling, table;
  `load_architecture` reads either kind of architecture file.
- `cells`: the DARTS cell space: `Genotype`, `CellNetwork`, `CellArchitecture`.
"""

from tfnas.space.architecture import (Architecture, architecture_from_dict,
                                      architecture_from_json, load_architecture)
from tfnas.space.ops import SKIP, LayerSignature, Op, parse_ops
from tfnas.space.spaces import (PRESET_NAMES, LayerSpec, SearchSpace, Stage, get_space,
                                make_divisible)

__all__ = ["Architecture", "architecture_from_dict", "architecture_from_json", "load_architecture", "LayerSignature", "LayerSpec", "Op", "PRESET_NAMES", "SKIP",
           "SearchSpace", "Stage", "get_space", "make_divisible", "parse_ops"]
