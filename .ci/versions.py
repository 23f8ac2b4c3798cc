"""Print the versions CI's summary shows for the venv whose python runs this."""

from importlib.metadata import PackageNotFoundError, version

NAMES = ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "tracedistill")


def main() -> None:
    parts = []
    for name in NAMES:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} -")
    print(", ".join(parts))


if __name__ == "__main__":
    main()
