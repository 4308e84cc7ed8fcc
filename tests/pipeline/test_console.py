"""What the console prints at the end of a run: the results table's numbers as they are (counts as counts)."""
from run_record.summary import format_table


def test_counts_print_as_integers_and_means_with_four_decimals():
    text = format_table({"full": {"em_strict@1shot": 0.5, "n_docs@1shot": 4.0},
                         "mlp_out_L28-31@0.1": {"em_strict@1shot": 0.25, "n_docs@1shot": 4.0}})
    header, full, variant = text.splitlines()
    assert header.split() == ["variant", "em_strict", "n_docs"]
    assert full.split() == ["full", "@", "1shot", "0.5000", "4"] and variant.split()[-2:] == ["0.2500", "4"]
    assert "4.0000" not in text
    assert format_table({"full": {"acc": None}}).splitlines()[1].split() == ["full", "n/a"]  # undefined, not 0
    flips = format_table({"cut": {"delta_strict": -0.125, "right_to_wrong_strict": 1.0, "truncated_prompts": 0.0}})
    assert flips.splitlines()[1].split() == ["cut", "-0.1250", "1", "0"]
