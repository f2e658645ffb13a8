"""The one table format the API and fan-out benchmarks print: measure, result, target."""


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(name) for name, _, _ in rows)
    print(f"{'measure':<{width}}  {'result':>14}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>14}  {target}")
