def shout(name: str) -> str:
    return name.upper()
