"""Faces counted in large frames, the time it takes, and how probe identity survives re-encoding.

1. Recall by frame size: crowds of 16 different people (refvendor.samples.crowd_jpeg, LFW
   faces; a face's box is about as wide as its tile) of 150 down to 40 pixels, placed at
   two or three positions in frames from 640x480 to 6000x4000, counted by the CNN counter with the
   default minimum face (48 pixels) and the time per frame: wall time, and the CPU time of
   the scanning thread, which does not count time waiting for a busy machine's cores.
2. Probe identity (gateway/context/identity.py) on real faces: how many bits of the 64 flip
   when a picture is re-encoded (JPEG quality 95 to 10, PNG, scaled, one byte appended),
   whether it is still the same probe (a band of the hash in common), and how many pairs of
   different people's faces share a band (would be taken for one probe).

    .venv/bin/python bench/inspection_frames.py [--min-face 48] [--positions 2]
"""

from __future__ import annotations

import argparse
import io
import itertools
import statistics
import time

from PIL import Image

from gateway.context.face_detection import DEFAULT_MIN_FACE, face_counter
from gateway.context.identity import identity_keys, image_identity
from gateway.context.inspection import ProbeInspector
from refvendor import samples

FRAMES = ((640, 480), (1920, 1080), (4000, 3000), (6000, 4000))
SIDES = (150, 110, 80, 60, 48)
CROWD = 16


def framed(data: bytes, size: tuple[int, int], position: int) -> bytes | None:
    frame = Image.new("RGB", size, "#808080")
    crowd = Image.open(io.BytesIO(data))
    room = (size[0] - crowd.width, size[1] - crowd.height)
    if room[0] < 0 or room[1] < 0:
        return None
    # Top left, centre, bottom right: tiles are cut at different places through the faces.
    fraction = (0.0, 0.5, 1.0)[position % 3]
    frame.paste(crowd, (int(room[0] * fraction), int(room[1] * fraction)))
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def recall(min_face: int, positions: int) -> None:
    inspector = ProbeInspector(counter=face_counter("cnn", min_face=min_face))
    print(f"== recall: {CROWD} faces per frame, CNN, minimum face {min_face} px\n")
    for size in FRAMES:
        walls, cpus = [], []
        for side in SIDES:
            counted = []
            for position in range(positions):
                crowd = samples.crowd_jpeg(CROWD, side=side, first=position * 6)
                data = framed(crowd, size, position)
                if data is None:
                    break
                wall, cpu = time.perf_counter(), time.thread_time()
                counted.append(inspector.inspect_image(data).faces)
                walls.append(time.perf_counter() - wall)
                cpus.append(time.thread_time() - cpu)
            if counted:
                present = CROWD * len(counted)
                print(f"  {size[0]}x{size[1]}, faces of {side} px: {sum(counted)}/{present}")
        print(
            f"  {size[0]}x{size[1]}: median per frame {statistics.median(walls):.2f} s wall,"
            f" {statistics.median(cpus):.2f} s CPU of the scanning thread\n"
        )
    inspector.close()


def reencoded(data: bytes, image_format: str, quality: int = 90, scale: float = 1.0) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if scale != 1.0:
        image = image.resize((int(image.width * scale), int(image.height * scale)))
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, quality=quality)
    return buffer.getvalue()


def bits(a: str, b: str) -> int:
    return bin(int(a.split(":")[1], 16) ^ int(b.split(":")[1], 16)).count("1")


def identity() -> None:
    pictures = [
        ("astronaut", samples.astronaut_jpeg()),
        ("closeup", samples.astronaut_variant_jpeg()),
    ]
    pictures += [(f"lfw-{i}", samples.lfw_face_jpeg(i)) for i in samples.distinct_lfw_indices()]
    pictures += [("crowd-16", samples.crowd_jpeg(16))]
    changes = {"append 1 byte": lambda d: d + b"\x00", "PNG": lambda d: reencoded(d, "PNG")}
    changes |= {
        f"JPEG q{q}": (lambda d, q=q: reencoded(d, "JPEG", q)) for q in (95, 75, 50, 30, 15, 10)
    }
    changes |= {
        f"scaled {s}": (lambda d, s=s: reencoded(d, "JPEG", 85, s)) for s in (0.5, 0.8, 1.5)
    }
    print(f"\n== probe identity: {len(pictures)} pictures of faces\n")
    print(f"  {'change':<14} {'bits flipped (max)':>19} {'still one probe':>16}")
    for name, change in changes.items():
        flips, same = [], 0
        for _, data in pictures:
            a, b = image_identity(data), image_identity(change(data))
            flips.append(bits(a, b))
            same += bool(set(identity_keys(a)) & set(identity_keys(b)))
        print(f"  {name:<14} {max(flips):>19} {same:>10}/{len(pictures)}")
    ids = [image_identity(data) for _, data in pictures]
    pairs = list(itertools.combinations(ids, 2))
    shared = sum(bool(set(identity_keys(a)) & set(identity_keys(b))) for a, b in pairs)
    nearest = min(bits(a, b) for a, b in pairs)
    print(
        f"\n  different pictures: {len(pairs)} pairs, {shared} sharing a band (one probe to the"
        f" windows), nearest {nearest} bits apart"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--min-face", type=int, default=DEFAULT_MIN_FACE)
    parser.add_argument("--positions", type=int, default=2)
    arguments = parser.parse_args()
    recall(arguments.min_face, arguments.positions)
    identity()


if __name__ == "__main__":
    main()
