from . import VERSION


def greeting(name: str) -> str:
    return f"hello, {name}! (common v{VERSION})"
