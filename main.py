"""Entry point: `python main.py fit --config configs/noisy.yaml` (also validate / test / predict)."""
from pipeline.cli import ExperimentCLI


def main(args: list[str] | None = None) -> ExperimentCLI:
    return ExperimentCLI(args=args)


if __name__ == "__main__":
    main()
