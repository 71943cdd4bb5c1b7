"""How well probe inspection counts faces: tiled crowds of real faces, and face-free images.

Crowds are built from scikit-image's Labeled Faces in the Wild subset (36 different people,
refvendor.samples.crowd_jpeg): 1, 4, 16 and 36 faces, with faces 150, 100 and 80 pixels
wide (the HOG window is 80x80 and the gateway does not upsample, so 60 shows the limit),
in six compositions each. `refused` counts the compositions the starting policy refuses as
a crowd scan (more than 3 faces counted). Face-free images: the 100 non-face LFW crops
(upscaled like the faces) and 13 of scikit-image's other photographs (a cat, coffee, a
rocket, coins, ...).

    .venv/bin/python bench/inspection_accuracy.py
"""

from __future__ import annotations

import io
import statistics

import numpy as np
import skimage.data
from PIL import Image

from gateway.context.inspection import ProbeInspector
from refvendor import samples

CROWDS = (1, 4, 16, 36)
SIDES = (150, 100, 80, 60)
COMPOSITIONS = 6
CROWD_LIMIT = 3  # data/patterns.yaml: crowd_scan.max_faces_in_probe
FACE_FREE_PHOTOS = (
    "brick", "camera", "cell", "chelsea", "coffee", "coins", "colorwheel", "grass",
    "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "rocket",
)  # fmt: skip


def jpeg(pixels: np.ndarray) -> bytes:  # type: ignore[type-arg]
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def face_free_images() -> list[tuple[str, bytes]]:
    images = []
    subset = skimage.data.lfw_subset()
    for index in range(100, 200):
        grey = np.round(subset[index] * 255).astype(np.uint8)
        crop = Image.fromarray(grey).resize((150, 150), Image.Resampling.BICUBIC)
        images.append((f"lfw-nonface-{index}", jpeg(np.asarray(crop))))
    for name in FACE_FREE_PHOTOS:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        try:
            images.append((name, jpeg(loader())))
        except Exception:  # data that needs a download is skipped
            continue
    return images


def main() -> None:
    inspector = ProbeInspector()
    print("crowds of real faces: faces counted / present, exact counts, refused as crowd scans\n")
    print(f"  {'faces':>5}  " + "".join(f"{f'{side} px':<30}" for side in SIDES))
    for count in CROWDS:
        cells = []
        for side in SIDES:
            counted = [
                inspector.inspect_image(samples.crowd_jpeg(count, side=side, first=c * 6)).faces
                for c in range(COMPOSITIONS)
            ]
            exact = sum(n == count for n in counted)
            refused = sum(n > CROWD_LIMIT for n in counted)
            mean = statistics.mean(counted) / count
            cells.append(
                f"{mean:6.1%} exact {exact}/{COMPOSITIONS} refused {refused}/{COMPOSITIONS}"
            )
        print(f"  {count:>5}  " + "".join(f"{cell:<30}" for cell in cells))

    single = [inspector.inspect_image(samples.lfw_face_jpeg(i)).faces for i in range(100)]
    print(f"\n  single LFW faces (150 px): {sum(n == 1 for n in single)}/100 counted as one face")

    free = face_free_images()
    false_faces = [(name, n) for name, data in free if (n := inspector.inspect_image(data).faces)]
    print(f"\nface-free images: {len(free)}; with a face counted: {len(false_faces)} {false_faces}")


if __name__ == "__main__":
    main()
