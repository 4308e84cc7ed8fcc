"""The GSM8K CPU recipe's problems (configs/data/gsm8k_mini, written for this project in GSM8K's format): they read as
GSM8K records, every calculator note <<expression=value>> is right, and each final answer follows from the notes."""
import re
from pathlib import Path

import yaml

from datamodules.gsm8k import FINAL_ANSWER, read_jsonl

MINI = Path(__file__).resolve().parents[2] / "configs" / "data" / "gsm8k_mini"


def test_the_mini_set_is_gsm8k_shaped_and_its_arithmetic_is_right():
    for name, n in (("test", 8), ("train", 4)):
        records = read_jsonl(MINI / f"{name}.jsonl")
        assert len(records) == n
        for r in records:
            lines = r["answer"].splitlines()
            assert FINAL_ANSWER.fullmatch(lines[-1]), lines[-1]
            notes = re.findall(r"<<([^=]+)=([^>]+)>>", r["answer"])
            assert notes, r["question"]
            for expression, value in notes:
                assert eval(expression, {"__builtins__": {}}) == float(value), expression  # noqa: S307  digits and + - * / only
            assert float(lines[-1].split("####")[1]) == float(notes[-1][1])  # the answer is the last note's value


def test_the_cpu_recipe_points_at_the_mini_set():
    config = yaml.safe_load((MINI.parents[1] / "gsm8k_cpu.yaml").read_text())
    assert (MINI.parents[2] / config["data"]["init_args"]["data_dir"]) == MINI
    assert config["trainer"]["accelerator"] == "cpu" and config["data"]["init_args"]["num_fewshot"] == [1, 2]
