"""The DARTS cell space: genotypes, the networks built from them, and their exact cost.

A cell (Liu et al. 2019, "DARTS", Sec. 2.1; LA-DARTS Sec. 3 and DCA-NAS Sec. 3 search the
same space) is a DAG of two input nodes (the two previous cells' outputs, numbered 0 and 1),
`nodes` intermediate nodes (2, 3, ...) and an output node, the concatenation of the nodes in
`concat`. A derived cell keeps two edges into each intermediate node, each from an earlier
node, each with one op of `CELL_OPS`. A `Genotype` holds a normal cell (keeps the resolution)
and a reduction cell (edges from the input nodes have stride 2; the channels double), written
as JSON or as the DARTS code bases' text, `Genotype(normal=[('sep_conv_3x3', 1), ...],
normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=range(2, 6))`.

A `CellNetwork` says how cells are stacked (DARTS' `NetworkCIFAR` / `NetworkImageNet`): a stem,
`cells` cells with reduction cells at 1/3 and 2/3 of the depth, global pooling and a linear
classifier, optionally the auxiliary head after the second reduction cell. A
`CellArchitecture` is a network and a genotype; its params and FLOPs are summed from the op
families of `tfnas.blocks`, the modules that build the same layers.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tfnas.blocks import CELL_FAMILIES, cell_family, cell_units
from tfnas.errors import TfnasError
from tfnas.run.files import write_text

# DARTS' PRIMITIVES, in its order; `none` (the zero op) is searched but never derived
CELL_OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
            "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
INPUT_NODES = 2
# how `Cell.sample` draws ops: `uniform` (DARTS' ops but none, equally likely) or `mixed` (each
# cell first draws its share of parameter-free ops, pools and skip, uniformly in [0, 1])
CELL_SAMPLING = ("uniform", "mixed")
AUX_CHANNELS = (128, 768)  # the auxiliary head's two convolutions (DARTS)


def edge_count(nodes: int) -> int:
    """Edges of a search cell: node j (from 0) takes one from each of its 2 + j predecessors."""
    return sum(INPUT_NODES + j for j in range(nodes))


def edge_sources(nodes: int) -> list[tuple[int, int]]:
    """(node, source) of every edge in the order α rows are kept: node 2's edges from 0 and 1,
    node 3's from 0, 1, 2, ..."""
    return [(INPUT_NODES + j, i) for j in range(nodes) for i in range(INPUT_NODES + j)]


def node_edges(nodes: int) -> list[range]:
    """The α rows (in `edge_sources` order) of the edges into each intermediate node; row
    `node_edges(n)[j][i]` is the edge from node i."""
    return [range(edge_count(j), edge_count(j + 1)) for j in range(nodes)]


@dataclasses.dataclass(frozen=True)
class EdgeSignature:
    """What one edge computes: its op on `channels` channels of a height x width map, with
    `stride` (2 on a reduction cell's edges from its inputs)."""

    op: str
    channels: int
    height: int
    width: int
    stride: int = 1

    @property
    def kernel(self) -> int:
        return int(self.op.rsplit("_", 1)[1].split("x")[0])

    @property
    def out_height(self) -> int:
        return -(-self.height // self.stride)

    @property
    def out_width(self) -> int:
        return -(-self.width // self.stride)

    def params(self) -> int:
        return cell_family(self.op).params(self)

    def flops(self) -> int:
        return cell_family(self.op).flops(self)


# the ops without weights on a normal edge: the pools and skip_connect
FREE_OPS = tuple(op for op in CELL_OPS[1:] if not EdgeSignature(op, 2, 2, 2).params())


@dataclasses.dataclass(frozen=True)
class Cell:
    """A derived cell: `edges` as (op, input node) pairs, two per intermediate node in node
    order (node i + 2 takes edges 2i and 2i + 1), and the nodes its output concatenates."""

    edges: tuple[tuple[str, int], ...]
    concat: tuple[int, ...]

    def check(self, what: str) -> None:
        """One TfnasError for the first problem: an unknown op, `none`, an edge from a node
        that is not earlier, a node with one input, a concat of nodes the cell lacks."""
        if not self.edges:
            raise TfnasError(f"the {what} cell has no edges")
        for i, edge in enumerate(self.edges):
            if (not isinstance(edge, tuple) or len(edge) != 2 or not isinstance(edge[0], str)
                    or isinstance(edge[1], bool) or not isinstance(edge[1], int)):
                raise TfnasError(f"the {what} cell's edge {i} is {edge!r}: expected (op, input "
                                 "node), e.g. ('sep_conv_3x3', 1)")
            op, source = edge
            node = i // 2 + INPUT_NODES
            if op == "none":
                raise TfnasError(f"the {what} cell's edge {i} into node {node} is 'none': a "
                                 "derived cell keeps no zero op")
            if op not in CELL_FAMILIES:
                raise TfnasError(f"unknown op {op!r} on the {what} cell's edge {i}: expected "
                                 f"one of {', '.join(CELL_OPS[1:])}")
            if not 0 <= source < node:
                raise TfnasError(f"the {what} cell's edge {i} into node {node} comes from node "
                                 f"{source}: an edge comes from an earlier node (0 to "
                                 f"{node - 1})")
        if len(self.edges) % 2:
            raise TfnasError(f"node {len(self.edges) // 2 + INPUT_NODES} of the {what} cell has "
                             "one input: every node takes two edges")
        last = self.nodes + INPUT_NODES
        if not self.concat or any(not INPUT_NODES <= n < last for n in self.concat):
            raise TfnasError(f"the {what} cell concatenates nodes {list(self.concat)}: expected "
                             f"intermediate nodes {INPUT_NODES} to {last - 1}")

    @property
    def nodes(self) -> int:
        return len(self.edges) // 2

    def to_lists(self) -> tuple[list[list[Any]], list[int]]:
        return [list(e) for e in self.edges], list(self.concat)

    def one_hot(self) -> np.ndarray:
        """LA-DARTS' encoding (Xu et al. 2020, Sec. 3.2): one row per edge of the search cell
        (`edge_sources` order: 14 for 4 nodes), one column per op (`CELL_OPS`), 1 where the
        derived cell keeps that op on that edge: 2 ones per node, 112 bits and 8 ones for
        DARTS' cell."""
        code = np.zeros((edge_count(self.nodes), len(CELL_OPS)), np.float32)
        for row, op in self.kept():
            code[row, op] = 1.0
        return code

    def kept(self) -> list[tuple[int, int]]:
        """(row in `edge_sources` order, i.e. the α row; index in `CELL_OPS`) of each edge the
        cell keeps: where its one-hot is 1, the table entries and α weights it is priced by."""
        return [(edge_count(i // 2) + source, CELL_OPS.index(op))
                for i, (op, source) in enumerate(self.edges)]

    @classmethod
    def sample(cls, nodes: int, rng: np.random.Generator,
               sampling: str = "uniform") -> "Cell":
        """A random derived cell: per node two distinct earlier nodes, on each an op other
        than `none`, drawn as `sampling` says (`CELL_SAMPLING`: `mixed` spans cells of
        convolutions alone to cells of pools and skips alone, which uniform draws almost
        never give and latency searches return); the output concatenates every intermediate
        node."""
        if sampling not in CELL_SAMPLING:
            raise TfnasError(f"unknown cell sampling {sampling!r}: choose "
                             f"{' or '.join(CELL_SAMPLING)}")
        ops = CELL_OPS[1:]
        convolutions = [op for op in ops if op not in FREE_OPS]
        share = float(rng.uniform()) if sampling == "mixed" else 0.0
        edges = []
        for j in range(nodes):
            for source in sorted(rng.choice(INPUT_NODES + j, 2, replace=False)):
                if sampling == "uniform":
                    op = ops[int(rng.integers(len(ops)))]
                else:
                    pool = FREE_OPS if rng.uniform() < share else convolutions
                    op = pool[int(rng.integers(len(pool)))]
                edges.append((op, int(source)))
        return cls(tuple(edges), tuple(range(INPUT_NODES, INPUT_NODES + nodes)))


def _cell(edges: Any, concat: Any, what: str) -> Cell:
    if not isinstance(edges, (list, tuple)):
        raise TfnasError(f"the {what} cell must be a list of (op, input node) pairs, got "
                         f"{edges!r}")
    pairs = tuple(tuple(e) if isinstance(e, (list, tuple)) else e for e in edges)
    if concat is None:
        concat = range(INPUT_NODES, INPUT_NODES + len(pairs) // 2)
    if not isinstance(concat, (list, tuple, range)) or not all(
            isinstance(n, int) and not isinstance(n, bool) for n in concat):
        raise TfnasError(f"the {what} cell's concat must be a list of node numbers, got "
                         f"{concat!r}")
    cell = Cell(pairs, tuple(concat))
    cell.check(what)
    return cell


@dataclasses.dataclass(frozen=True)
class Genotype:
    """A normal and a reduction cell (DARTS' `Genotype` namedtuple)."""

    normal: Cell
    reduce: Cell

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Genotype":
        if not isinstance(data, Mapping) or not {"normal", "reduce"} <= set(data):
            raise TfnasError("a genotype has 'normal' and 'reduce' cells (and optionally "
                             "'normal_concat', 'reduce_concat')")
        return cls(_cell(data["normal"], data.get("normal_concat"), "normal"),
                   _cell(data["reduce"], data.get("reduce_concat"), "reduction"))

    def to_dict(self) -> dict[str, Any]:
        normal, normal_concat = self.normal.to_lists()
        reduce, reduce_concat = self.reduce.to_lists()
        return {"normal": normal, "normal_concat": normal_concat, "reduce": reduce,
                "reduce_concat": reduce_concat}

    @classmethod
    def parse(cls, text: str) -> "Genotype":
        """Reads the DARTS code bases' text, `Genotype(normal=[...], normal_concat=[2, 3, 4,
        5], reduce=[...], reduce_concat=range(2, 6))` (an assignment `NAME = ...` is fine),
        or the JSON of `to_dict`."""
        text = text.strip()
        if text.startswith("{"):
            try:
                return cls.from_dict(json.loads(text))
            except json.JSONDecodeError as err:
                raise TfnasError(f"malformed genotype JSON: {err}") from None
        try:
            tree = ast.parse(text, mode="exec")
        except SyntaxError as err:
            raise TfnasError(f"malformed genotype text: {err.msg} (line {err.lineno})") from None
        node = tree.body[0].value if len(tree.body) == 1 and isinstance(
            tree.body[0], (ast.Assign, ast.Expr)) else None
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Genotype"):
            raise TfnasError("expected a genotype as DARTS writes it: Genotype(normal=[...], "
                             "normal_concat=[...], reduce=[...], reduce_concat=[...])")
        names = ("normal", "normal_concat", "reduce", "reduce_concat")
        values = dict(zip(names, (_literal(a) for a in node.args)))
        values.update({kw.arg: _literal(kw.value) for kw in node.keywords})
        unknown = set(values) - set(names)
        if unknown:
            raise TfnasError(f"unknown genotype field(s) {', '.join(sorted(unknown))}: "
                             f"expected {', '.join(names)}")
        return cls.from_dict(values)

    def to_text(self) -> str:
        """The DARTS code bases' text (what `parse` reads)."""
        d = self.to_dict()

        def cell(edges: list[list[Any]]) -> str:
            return "[" + ", ".join(f"({op!r}, {i})" for op, i in edges) + "]"

        return (f"Genotype(normal={cell(d['normal'])}, normal_concat={d['normal_concat']}, "
                f"reduce={cell(d['reduce'])}, reduce_concat={d['reduce_concat']})")

    @classmethod
    def named(cls, name: str) -> "Genotype":
        """A published genotype by name (`PUBLISHED`), e.g. `darts_v2`."""
        if name not in PUBLISHED:
            raise TfnasError(f"unknown genotype {name!r}: choose one of "
                             f"{', '.join(PUBLISHED)} or give a file")
        return cls.parse(PUBLISHED[name])

    @classmethod
    def load(cls, source: str | Path) -> "Genotype":
        """A published genotype's name, or a file holding its text or JSON."""
        if str(source) in PUBLISHED:
            return cls.named(str(source))
        path = Path(source)
        if not path.is_file():
            raise TfnasError(f"unknown genotype {str(source)!r}: name one of "
                             f"{', '.join(PUBLISHED)} or give a file that exists")
        try:
            return cls.parse(path.read_text())
        except TfnasError as err:
            raise TfnasError(f"{path}: {err}") from None


def _literal(node: ast.AST) -> Any:
    """A literal list of (op, node) pairs or node numbers; `range(a, b)` too."""
    if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "range"
            and not node.keywords):
        return range(*(_literal(a) for a in node.args))
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise TfnasError(f"malformed genotype text near {ast.unparse(node)[:60]!r}: expected "
                         "literal lists") from None


# Published cells, as their authors' code writes them (genotypes.py of quark0/darts and
# yuhuixu1993/PC-DARTS). CIFAR-10 params of their evaluation networks (20 cells, 36 channels,
# without the auxiliary head) in their papers: DARTS (first / second order) 3.3M, PC-DARTS 3.6M.
PUBLISHED = {
    "darts_v1": "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), "
                "('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', "
                "0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', "
                "0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), "
                "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', "
                "0)], reduce_concat=[2, 3, 4, 5])",
    "darts_v2": "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
                "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', "
                "0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', "
                "0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
                "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', "
                "1)], reduce_concat=[2, 3, 4, 5])",
    "pc_darts_cifar": "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), "
                      "('sep_conv_3x3', 0), ('dil_conv_3x3', 1), ('sep_conv_5x5', 0), "
                      "('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)], "
                      "normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', "
                      "0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), "
                      "('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2)], "
                      "reduce_concat=range(2, 6))",
    "pc_darts_imagenet": "Genotype(normal=[('skip_connect', 1), ('sep_conv_3x3', 0), "
                         "('sep_conv_3x3', 0), ('skip_connect', 1), ('sep_conv_3x3', 1), "
                         "('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('dil_conv_5x5', 4)], "
                         "normal_concat=range(2, 6), reduce=[('sep_conv_3x3', 0), "
                         "('skip_connect', 1), ('dil_conv_5x5', 2), ('max_pool_3x3', 1), "
                         "('sep_conv_3x3', 2), ('sep_conv_3x3', 1), ('sep_conv_5x5', 0), "
                         "('sep_conv_3x3', 3)], reduce_concat=range(2, 6))",
}


# --- networks -----------------------------------------------------------------------------

STEMS = ("cifar", "imagenet")


@dataclasses.dataclass(frozen=True)
class CellNetwork:
    """How cells are stacked (DARTS' NetworkCIFAR / NetworkImageNet): input, `init_channels`
    C of the first cells (doubled at each reduction cell), `cells` cells, the stem
    (`cifar`: 3x3 conv to 3C at full resolution; `imagenet`: three stride-2 3x3 convs, the
    mobile setting), and the auxiliary head after the second reduction cell."""

    name: str
    input_size: int = 32
    input_channels: int = 3
    num_classes: int = 10
    init_channels: int = 36
    cells: int = 20
    stem: str = "cifar"
    auxiliary: bool = False
    stem_multiplier: int = 3

    def __post_init__(self) -> None:
        problems = []
        if self.stem not in STEMS:
            problems.append(f"stem must be {' or '.join(STEMS)}, got {self.stem!r}")
        if self.cells < 3:
            problems.append(f"a cell network has at least 3 cells (two reduction cells), got "
                            f"{self.cells}")
        if self.init_channels < 2 or self.init_channels % 2:
            problems.append(f"init_channels must be even and at least 2, got "
                            f"{self.init_channels}")
        low = 8 if self.stem == "cifar" else 32
        if self.input_size < low:
            problems.append(f"input_size must be at least {low} for the {self.stem} stem, got "
                            f"{self.input_size}")
        if self.input_channels < 1 or self.num_classes < 2:
            problems.append("input_channels must be at least 1 and num_classes at least 2")
        if problems:
            raise TfnasError(f"network {self.name!r}: " + "; ".join(problems))

    @property
    def reduction_cells(self) -> tuple[int, int]:
        return (self.cells // 3, 2 * self.cells // 3)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CellNetwork":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise TfnasError(f"unknown cell network field(s) {', '.join(sorted(unknown))}")
        return cls(**data)

    def replace(self, **changes: Any) -> "CellNetwork":
        return dataclasses.replace(self, **changes)


def is_cell_network(space: Any) -> bool:
    """A network of DARTS cells (a `CellNetwork`), not a layer space."""
    return isinstance(space, CellNetwork)


NETWORKS = {
    # DARTS' search network and CIFAR evaluation network (Sec. 3.1, 3.2)
    "darts_search": CellNetwork("darts_search", init_channels=16, cells=8),
    "darts_cifar": CellNetwork("darts_cifar", init_channels=36, cells=20),
    # the mobile setting (ImageNet, 224x224, under 600M multiply-adds; Sec. 3.3)
    "darts_imagenet": CellNetwork("darts_imagenet", input_size=224, num_classes=1000,
                                  init_channels=48, cells=14, stem="imagenet"),
    # 28x28x1 inputs (MNIST, Fashion-MNIST): the same depths at that size
    "darts28_search": CellNetwork("darts28_search", input_size=28, input_channels=1,
                                  init_channels=16, cells=8),
    "darts28": CellNetwork("darts28", input_size=28, input_channels=1, init_channels=36,
                           cells=20),
}


# the network a search network's cells are evaluated in (DARTS Sec. 3: searched with 8 cells
# of 16 channels, trained with 20 of 36); the others are their own
EVALUATED_IN = {"darts_search": "darts_cifar", "darts28_search": "darts28"}


def placeholder_genotype(nodes: int = 4) -> Genotype:
    """Cells of `nodes` nodes, each fed by both inputs through skip_connect: what plans a
    network's channels and sizes, which do not depend on the ops."""
    cell = Cell(tuple(("skip_connect", i) for _ in range(nodes) for i in (0, 1)),
                tuple(range(INPUT_NODES, INPUT_NODES + nodes)))
    return Genotype(cell, cell)


def get_network(name: str, **overrides: Any) -> CellNetwork:
    if name not in NETWORKS:
        raise TfnasError(f"unknown cell network {name!r}: choose one of {', '.join(NETWORKS)}")
    return NETWORKS[name].replace(**overrides) if overrides else NETWORKS[name]


@dataclasses.dataclass(frozen=True)
class CellPlan:
    """One cell of a network: its inputs' channels and sizes, its channels C, whether it
    reduces and whether its first input is at twice the second's resolution."""

    index: int
    reduction: bool
    reduction_prev: bool
    c_prev_prev: int
    c_prev: int
    channels: int
    size_prev_prev: int
    size_prev: int
    cell: Cell

    @property
    def out_size(self) -> int:
        return cell_units.half(self.size_prev) if self.reduction else self.size_prev

    @property
    def out_channels(self) -> int:
        return len(self.cell.concat) * self.channels

    def signature(self, op: str, source: int) -> EdgeSignature:
        """What `op` computes on an edge from node `source` of this cell: C channels at the
        cell's input size, stride 2 from the inputs of a reduction cell."""
        stride = 2 if self.reduction and source < INPUT_NODES else 1
        size = self.size_prev if source < INPUT_NODES else self.out_size
        return EdgeSignature(op, self.channels, size, size, stride)

    def edge(self, i: int) -> EdgeSignature:
        """The signature of edge i."""
        return self.signature(*self.cell.edges[i])


@dataclasses.dataclass(frozen=True)
class CellArchitecture:
    """A network of cells: the stacking (`network`) and the cells (`genotype`)."""

    network: CellNetwork
    genotype: Genotype

    def stem_outputs(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((channels, size) of s0, (channels, size) of s1): the first cell's inputs."""
        n = self.network
        c = n.init_channels
        if n.stem == "cifar":
            return (n.stem_multiplier * c, n.input_size), (n.stem_multiplier * c, n.input_size)
        quarter = cell_units.half(cell_units.half(n.input_size))
        return (c, quarter), (c, cell_units.half(quarter))

    def plan(self) -> list[CellPlan]:
        """The cells in order, with the channels and sizes DARTS' networks give them."""
        n = self.network
        (c_pp, s_pp), (c_p, s_p) = self.stem_outputs()
        c = n.init_channels
        reduction_prev = n.stem == "imagenet"
        plans = []
        for i in range(n.cells):
            reduction = i in n.reduction_cells
            c = 2 * c if reduction else c
            plan = CellPlan(i, reduction, reduction_prev, c_pp, c_p, c, s_pp, s_p,
                            self.genotype.reduce if reduction else self.genotype.normal)
            plans.append(plan)
            c_pp, s_pp, c_p, s_p = c_p, s_p, plan.out_channels, plan.out_size
            reduction_prev = reduction
        return plans

    def aux_input(self) -> tuple[int, int]:
        """(channels, size) of the map the auxiliary head reads: the second reduction cell's
        output."""
        plan = self.plan()[self.network.reduction_cells[1]]
        return plan.out_channels, plan.out_size

    def aux_pool_stride(self) -> int:
        """DARTS' auxiliary head pools 5x5 to a 2x2 map: stride 3 on an 8x8 map (CIFAR),
        stride 2 on a 7x7 one (ImageNet)."""
        size = self.aux_input()[1]
        if size not in (7, 8):
            raise TfnasError(f"the auxiliary head reads an 8x8 or 7x7 map; network "
                             f"{self.network.name!r} has {size}x{size} after its second "
                             "reduction cell: turn the auxiliary head off")
        return 3 if size == 8 else 2

    # --- cost ---------------------------------------------------------------------------

    def _units(self) -> list[tuple[int, int]]:
        """(params, FLOPs) of every part, in build order (the auxiliary head last)."""
        n = self.network
        c, size, k = n.init_channels, n.input_size, n.input_channels
        units = []
        if n.stem == "cifar":
            c0 = n.stem_multiplier * c
            units.append((9 * k * c0 + 4 * c0, size * size * 9 * k * c0))
        else:
            s1, s2 = cell_units.half(size), cell_units.half(cell_units.half(size))
            s3 = cell_units.half(s2)
            for c_in, c_out, s in ((k, c // 2, s1), (c // 2, c, s2), (c, c, s3)):
                units.append((9 * c_in * c_out + 4 * c_out, s * s * 9 * c_in * c_out))
        plans = self.plan()
        for plan in plans:
            if plan.reduction_prev:
                units.append((cell_units.factorized_reduce_params(plan.c_prev_prev,
                                                                  plan.channels),
                              cell_units.factorized_reduce_flops(
                                  plan.c_prev_prev, plan.channels, plan.size_prev_prev,
                                  plan.size_prev_prev)))
            else:
                units.append((cell_units.relu_conv_bn_params(plan.c_prev_prev, plan.channels),
                              cell_units.relu_conv_bn_flops(plan.c_prev_prev, plan.channels,
                                                            plan.size_prev_prev,
                                                            plan.size_prev_prev)))
            units.append((cell_units.relu_conv_bn_params(plan.c_prev, plan.channels),
                          cell_units.relu_conv_bn_flops(plan.c_prev, plan.channels,
                                                        plan.size_prev, plan.size_prev)))
            for i in range(len(plan.cell.edges)):
                sig = plan.edge(i)
                units.append((sig.params(), sig.flops()))
        last = plans[-1].out_channels
        units.append((last * n.num_classes + n.num_classes, last * n.num_classes))
        if n.auxiliary:
            c_aux, size = self.aux_input()
            stride = self.aux_pool_stride()
            pooled = (size - 5) // stride + 1
            a, b = AUX_CHANNELS
            units.append((c_aux * a + 4 * a + 4 * a * b + 4 * b + b * n.num_classes
                          + n.num_classes,
                          pooled * pooled * c_aux * a + 4 * a * b + b * n.num_classes))
        return units

    def params(self) -> int:
        """Every weight of the built Keras network (BN: 4 per channel, as Keras counts)."""
        return sum(p for p, _ in self._units())

    def flops(self) -> int:
        """Multiply-adds of the convolutions and the classifier (pooling and BN: none)."""
        return sum(f for _, f in self._units())

    # --- files --------------------------------------------------------------------------

    @property
    def space(self) -> CellNetwork:
        """What every consumer of an architecture reads (name, input size and channels,
        classes), as `Architecture.space` gives it for a layer space."""
        return self.network

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network.to_dict(), "genotype": self.genotype.to_dict()}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CellArchitecture":
        if not isinstance(data, Mapping) or not {"network", "genotype"} <= set(data):
            raise TfnasError("a cell architecture has 'network' and 'genotype'")
        if not isinstance(data["network"], Mapping):
            raise TfnasError("a cell architecture's 'network' is an object of its settings")
        return cls(CellNetwork.from_dict(data["network"]), Genotype.from_dict(data["genotype"]))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, self.to_json() + "\n")

    def one_hot(self, reduce: bool = False) -> np.ndarray:
        """LA-DARTS' encoding of the normal cell (`Cell.one_hot`, [edges, ops]); with
        `reduce`, the reduction cell's rows below it (the paper leaves it out)."""
        code = self.genotype.normal.one_hot()
        return np.concatenate([code, self.genotype.reduce.one_hot()]) if reduce else code

    @classmethod
    def sample(cls, network: CellNetwork, seed: int | np.random.Generator,
               nodes: int = 4, sampling: str = "uniform") -> "CellArchitecture":
        """Random derived cells (`Cell.sample`, drawn as `sampling` says) in `network`; same
        seed, same network."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        normal = Cell.sample(nodes, rng, sampling)
        return cls(network, Genotype(normal, Cell.sample(nodes, rng, sampling)))

    def brief(self) -> str:
        """One line: each cell's edges as op/source (the search log's `arch` column)."""
        return " | ".join(f"{what} " + " ".join(f"{op}/{source}" for op, source in cell.edges)
                          for what, cell in (("normal", self.genotype.normal),
                                             ("reduce", self.genotype.reduce)))

    def table(self) -> str:
        """The cells, readable: one line per node and the network's size."""
        lines = []
        for what, cell in (("normal", self.genotype.normal), ("reduce", self.genotype.reduce)):
            lines.append(f"{what} cell (output: nodes {', '.join(map(str, cell.concat))})")
            for j in range(cell.nodes):
                (a, i), (b, k) = cell.edges[2 * j], cell.edges[2 * j + 1]
                lines.append(f"  node {j + INPUT_NODES} = {a}(node {i}) + {b}(node {k})")
        n = self.network
        lines.append(f"network {n.name}: {n.cells} cells, C={n.init_channels}, "
                     f"{n.input_size}x{n.input_size}x{n.input_channels}, {self.params():,} "
                     f"params, {self.flops() / 1e6:.1f} MFLOPs (multiply-adds)")
        return "\n".join(lines)


def cell_architecture(network: str | CellNetwork, genotype: str | Path | Genotype,
                      **overrides: Any) -> CellArchitecture:
    """A network (preset name or spec, with `overrides`) of the genotype (published name,
    file or Genotype)."""
    net = get_network(network, **overrides) if isinstance(network, str) else (
        network.replace(**overrides) if overrides else network)
    cells = genotype if isinstance(genotype, Genotype) else Genotype.load(genotype)
    return CellArchitecture(net, cells)

