"""kd_nmt/common/seed_stats.py and seed_table's seed-level table, against hand computations."""
import math
import sys

import pytest

from helpers import REPO
from kd_nmt.common import seed_stats as s

sys.path.insert(0, str(REPO / "scripts"))

import seed_table  # noqa: E402
from test_seed_table import bench_csv  # noqa: E402


@pytest.mark.parametrize("df, quantile", [(1, 12.706205), (2, 4.302653), (4, 2.776445), (30, 2.042272)])
def test_t_quantiles_match_the_tables(df, quantile):
    assert s.t_quantile(0.975, df) == pytest.approx(quantile, abs=1e-6)


def test_t_tail_has_the_closed_forms_of_df_1_and_2():
    # df 1 (Cauchy): P(|T| >= t) = 1 - 2 atan(t) / pi; df 2: 1 - t / sqrt(2 + t^2)
    assert s.t_sf2(3.0, 1) == pytest.approx(1 - 2 * math.atan(3.0) / math.pi, abs=1e-12)
    assert s.t_sf2(4.0, 2) == pytest.approx(1 - 4 / math.sqrt(18), abs=1e-12)


def test_paired_seed_difference_by_hand():
    # diffs 1, 2, 1: mean 4/3, sd sqrt(1/3), se 1/3, t = 4, df 2
    got = s.paired_seed_difference({1: 21, 2: 23, 3: 23, 9: 50}, {1: 20, 2: 21, 3: 22})
    assert got["n"] == 3 and got["diffs"] == [1, 2, 1]  # seed 9 has no baseline: left out
    assert got["mean"] == pytest.approx(4 / 3)
    assert got["sd"] == pytest.approx(math.sqrt(1 / 3))
    assert got["p"] == pytest.approx(1 - 4 / math.sqrt(18))  # 0.0572
    assert got["low"] == pytest.approx(4 / 3 - 4.302653 / 3, abs=1e-6)
    assert got["high"] == pytest.approx(4 / 3 + 4.302653 / 3, abs=1e-6)
    # the interval includes 0 and p > 0.05: no call, although every seed gained
    assert s.call(got, got["p"]) == "no difference shown"


def test_one_seed_is_a_pilot_and_constant_differences_are_exact():
    one = s.paired_seed_difference({1: 21}, {1: 20})
    assert one["mean"] == 1 and one["low"] is None and one["p"] is None
    assert s.call(one, None) == "pilot (1 seed)"
    assert s.format_interval(one) == "+1.00 (1 seed)"
    same = s.paired_seed_difference({1: 21, 2: 22}, {1: 20, 2: 21})
    assert same["p"] == 0.0 and same["low"] == same["high"] == 1.0
    assert s.call(same, 0.0) == "gain"


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): 0.02, 0.03, 0.06, max(0.06, 0.04) = 0.06
    assert s.holm([0.01, 0.04, 0.03, None, 0.005]) == pytest.approx([0.03, 0.06, 0.06, None, 0.02])
    assert s.holm([0.6, 0.9]) == [1.0, 1.0]  # capped at 1


def test_seed_table_prints_the_seed_level_calls(tmp_path):
    # word_kd beats the baseline by 2.0 and 2.2 BLEU; seq_kd by 1 then 0 (chrF the same)
    for seed, (base, word, seq) in {1: (20, 22.0, 21), 2: (22, 24.2, 22)}.items():
        bench_csv(tmp_path, seed, [("baseline", "beam5", base, base, ""), ("word_kd", "beam5", word, base + 1, "0.001"),
                                   ("seq_kd", "beam5", seq, base, "0.01")])
    lines = seed_table.table(seed_table.read_rows(tmp_path), "baseline")
    start = lines.index(next(line for line in lines if line.startswith("| size | method | decoding | seeds | Δ BLEU")))
    word, seq = lines[start + 2], lines[start + 3]
    # word_kd BLEU: diffs 2.0, 2.2: mean 2.1, sd 0.1414, se 0.1, t 21, df 1: p = 1 - 2 atan(21)/pi = 0.0303;
    # interval 2.1 ± 12.706 * 0.1 = [0.83, 3.37]; Holm over 2 rows: seq_kd's p (t = 1, df 1) = 0.5, so
    # word_kd's adjusted p = 2 * 0.0303 = 0.0606 -> no call despite its interval, seq_kd's
    # max(0.0606, 1 * 0.5) = 0.5; chrF +1, +1: exact
    p_word = 1 - 2 * math.atan(21) / math.pi
    assert word.startswith(f"| d2 | word_kd | beam5 | 2 | +2.10 [+0.83, +3.37] | {2 * p_word:.3f} "
                           "| no difference shown |")
    assert word.endswith("| +1.00 [+1.00, +1.00] | 0.000 | gain |")
    assert seq.startswith("| d2 | seq_kd | beam5 | 2 | +0.50 [-5.85, +6.85] | 0.500 | no difference shown |")


def test_beam_gain_is_beam_minus_greedy_per_seed(tmp_path):
    # seq_kd: beam - greedy = 0.2, 0.4 (a small gain); baseline: 1.0, 1.0 (exact)
    for seed, (base_g, base_b, seq_g, seq_b) in {1: (20, 21, 22, 22.2), 2: (21, 22, 23, 23.4)}.items():
        bench_csv(tmp_path, seed, [("baseline", "greedy", base_g, 40, ""), ("baseline", "beam5", base_b, 41, ""),
                                   ("seq_kd", "greedy", seq_g, 40, ""), ("seq_kd", "beam5", seq_b, 40, "")])
    lines = seed_table.beam_gain_table(seed_table.read_rows(tmp_path))
    assert lines[0].startswith("| size | method | seeds | BLEU beam5 − greedy [95 % CI] | Holm p | call |")
    assert lines[2] == ("| d2 | baseline | 2 | +1.00 [+1.00, +1.00] | 0.000 | beam helps "
                        "| +1.00 [+1.00, +1.00] | 0.000 | beam helps |")
    # diffs 0.2, 0.4: mean 0.3, sd 0.1414, se 0.1, t 3, df 1: p = 1 - 2 atan(3)/pi = 0.2048; Holm ranks
    # it second of two (the baseline's p is 0): multiplier 1
    p = 1 - 2 * math.atan(3) / math.pi
    assert lines[3].startswith(f"| d2 | seq_kd | 2 | +0.30 [-0.97, +1.57] | {p:.3f} | no difference shown |")


def test_beam_gain_needs_greedy_rows(tmp_path):
    from kd_nmt.errors import KDNMTError

    bench_csv(tmp_path, 1, [("baseline", "beam5", 20, 40, "")])
    with pytest.raises(KDNMTError, match="--beam-gain needs greedy and beam rows"):
        seed_table.beam_gain_table(seed_table.read_rows(tmp_path))
