from attnmag.cli import console

__all__: list[str] = []

console()
