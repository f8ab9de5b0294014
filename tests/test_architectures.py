"""The registered student/teacher sizes: their defaults reach fairseq's parsed arguments, an
explicit option still wins, and the built models have the parameter counts the README lists."""
import re

import pytest
from fairseq import options, tasks

from helpers import PLUGIN, REPO
from kd_nmt.architectures import SIZES

README = (REPO / "README.md").read_text(encoding="utf-8")
# the README's size table: | `ARCH` | layers | dim | ffn | heads | parameters (4,008 symbols) |
README_PARAMS_4K = {m.group(1): int(m.group(2).replace(",", ""))
                    for m in re.finditer(r"^\| `(transformer_kd_\w+)` \|.*\| ([\d,]+) \|$", README, re.M)}


def test_the_readme_lists_every_size():
    assert sorted(README_PARAMS_4K) == sorted(SIZES)


def parse(data_bin, *argv):
    parser = options.get_training_parser()
    return options.parse_args_and_arch(parser, [str(data_bin), "--user-dir", str(PLUGIN), *argv])


@pytest.mark.parametrize("arch", sorted(SIZES))
def test_size_defaults_apply(data_bin, arch):
    layers, dim, ffn, heads = SIZES[arch]
    args = parse(data_bin, "--arch", arch)
    for side, side_layers in zip(("encoder", "decoder"), layers):
        assert getattr(args, f"{side}_layers") == side_layers
        assert getattr(args, f"{side}_embed_dim") == dim
        assert getattr(args, f"{side}_ffn_embed_dim") == ffn
        assert getattr(args, f"{side}_attention_heads") == heads
    assert args.share_all_embeddings is True


def test_explicit_option_overrides_size(data_bin):
    args = parse(data_bin, "--arch", "transformer_kd_tiny", "--encoder-layers", "4", "--dropout", "0.3")
    assert args.encoder_layers == 4 and args.decoder_layers == 2 and args.dropout == 0.3


@pytest.mark.parametrize("arch", sorted(README_PARAMS_4K))
def test_parameter_counts_listed_in_readme(tmp_path, arch):
    symbols = [f"w{i}" for i in range(4008 - 4)]  # + fairseq's 4 specials = 4008
    for lang in ("de", "en"):
        (tmp_path / f"dict.{lang}.txt").write_text("".join(f"{s} 1\n" for s in symbols))
    args = parse(tmp_path, "--arch", arch, "--task", "translation", "-s", "de", "-t", "en")
    task = tasks.setup_task(args)
    model = task.build_model(args)
    assert sum(p.numel() for p in model.parameters()) == README_PARAMS_4K[arch]
