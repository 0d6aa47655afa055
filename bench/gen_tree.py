"""Generate the seeded benchmark tree: 10,000 files / ~200 MiB.

8,000 text files of 1-8 KiB, 1,800 mixed files of 16-64 KiB (half text, half random bytes),
200 random files of ~0.46 MiB, spread over nested directories.
"""
import os
import random
import sys

root = sys.argv[1]
rng = random.Random(20261122)
words = [("".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 10)))) for _ in range(2000)]


def text(n):
    out = []
    size = 0
    while size < n:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + "\n"
        out.append(line)
        size += len(line)
    return "".join(out)[:n].encode()


def path(i, ext):
    d = os.path.join(root, f"pkg{i % 40:02d}", f"sub{i % 7}")
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, f"f{i:05d}{ext}")


for i in range(8000):
    with open(path(i, ".py"), "wb") as f:
        f.write(text(rng.randint(1024, 8192)))
for i in range(8000, 9800):
    n = rng.randint(16 * 1024, 64 * 1024)
    with open(path(i, ".dat"), "wb") as f:
        f.write(text(n // 2) + rng.randbytes(n - n // 2))
for i in range(9800, 10000):
    with open(path(i, ".bin"), "wb") as f:
        f.write(rng.randbytes(rng.randint(460_000, 505_000)))
with open(os.path.join(root, "raypack.toml"), "w") as f:
    f.write('[project]\nname = "bench"\n')
