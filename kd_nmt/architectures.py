"""Student and teacher sizes used by the recipes, registered as fairseq transformer variants.

All share input/output embeddings (joined dictionary). Parameter counts for an 8k joint
vocabulary are listed in the README (measured with `kd-nmt bench`).

    name                      layers enc+dec  dim  ffn   heads
    transformer_kd_mini             1+1       128   512    2
    transformer_kd_tiny             2+2       128   512    2
    transformer_kd_small            3+3       256  1024    4
    transformer_kd_small_d3         3+3       256  1024    4
    transformer_kd_small_d2         3+2       256  1024    4
    transformer_kd_small_d1         3+1       256  1024    4
    transformer_kd_base             6+6       512  2048    8
    transformer_kd_narrow           2+2       192   768    4
    transformer_kd_micro            2+1        64   256    2

The ``_d2``/``_d1`` students keep the small teacher's encoder and shrink its decoder (deep
encoder, shallow decoder: Kasai et al. 2021; beam search pays per decoder layer), so
scripts/shrink_teacher.py can start them from the teacher's own layers. ``_d3`` is
``transformer_kd_small`` under the name the recipes read as "start from the teacher's layers":
the study's student as big as its teacher (born-again networks, Furlanello et al. 2018).

``_narrow``, ``_tiny`` and ``_micro`` are the Multi30k students trained from scratch under the
``transformer_kd_small`` teacher: with its 8k vocabulary about 47 %, 26 % and 9 % of its
parameters (recipes/multi30k.sh) — the capacity gap the shrunk ``_dN`` students lack.
"""
from fairseq.models import register_model_architecture
from fairseq.models.transformer import base_architecture

from kd_nmt.checkpoint import PLUGIN_ARCHS

# name: ((encoder layers, decoder layers), dim, ffn, heads)
SIZES = {
    "transformer_kd_mini": ((1, 1), 128, 512, 2),
    "transformer_kd_tiny": ((2, 2), 128, 512, 2),
    "transformer_kd_small": ((3, 3), 256, 1024, 4),
    "transformer_kd_small_d3": ((3, 3), 256, 1024, 4),
    "transformer_kd_small_d2": ((3, 2), 256, 1024, 4),
    "transformer_kd_small_d1": ((3, 1), 256, 1024, 4),
    "transformer_kd_base": ((6, 6), 512, 2048, 8),
    "transformer_kd_narrow": ((2, 2), 192, 768, 4),
    "transformer_kd_micro": ((2, 1), 64, 256, 2),
}


def _make(layers, dim, ffn, heads):
    def arch(args):
        for side, side_layers in zip(("encoder", "decoder"), layers):
            setattr(args, f"{side}_layers", getattr(args, f"{side}_layers", side_layers))
            setattr(args, f"{side}_embed_dim", getattr(args, f"{side}_embed_dim", dim))
            setattr(args, f"{side}_ffn_embed_dim", getattr(args, f"{side}_ffn_embed_dim", ffn))
            setattr(args, f"{side}_attention_heads", getattr(args, f"{side}_attention_heads", heads))
        args.share_all_embeddings = getattr(args, "share_all_embeddings", True)
        args.dropout = getattr(args, "dropout", 0.1)
        base_architecture(args)

    return arch


# checkpoints saved with the plugin name these "transformer" (kd_nmt.checkpoint), so stock
# fairseq, which does not know them, loads the students
assert tuple(SIZES) == PLUGIN_ARCHS, "keep kd_nmt.checkpoint.PLUGIN_ARCHS in step"

for _name, _size in SIZES.items():
    register_model_architecture("transformer", _name)(_make(*_size))
