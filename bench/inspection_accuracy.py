"""How well probe inspection counts faces: tiled crowds of real faces, and face-free images.

Crowds are built from scikit-image's Labeled Faces in the Wild subset (36 different people,
refvendor.samples.crowd_jpeg): 1, 4, 16 and 36 faces, with faces 150 down to 30 pixels wide,
in six compositions each, first as they are and then centred in a 1920x1080 frame (where the
CNN detector scans the frame scaled down). `refused` counts the compositions the starting
policy refuses as a crowd scan (more than 3 faces counted). Face-free images: the 100
non-face LFW crops (upscaled like the faces) and 12 of scikit-image's other photographs (a
cat, coffee, a rocket, coins, ...; not `camera`, a cameraman whose face the CNN rightly
finds). Each detector (gateway/context/face_detection.py) is measured on the same images in
the same run: the CNN, the default, and dlib's HOG, the fallback and the detector before it.

    .venv/bin/python bench/inspection_accuracy.py [--detector cnn|hog]
"""

from __future__ import annotations

import argparse
import io
import statistics

import numpy as np
import skimage.data
from PIL import Image

from gateway.context.face_detection import face_counter
from gateway.context.inspection import ProbeInspector
from refvendor import samples

CROWDS = (1, 4, 16, 36)
SIDES = (150, 100, 80, 60, 40, 30)
FRAME = (1920, 1080)
COMPOSITIONS = 6
CROWD_LIMIT = 3  # data/patterns.yaml: crowd_scan.max_faces_in_probe
FACE_FREE_PHOTOS = (
    "brick", "cell", "chelsea", "coffee", "coins", "colorwheel", "grass",
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


def framed(data: bytes, size: tuple[int, int]) -> bytes:
    """The image centred on a grey frame of the given size, faces unscaled."""
    frame = Image.new("RGB", size, "#808080")
    crowd = Image.open(io.BytesIO(data))
    frame.paste(crowd, ((size[0] - crowd.width) // 2, (size[1] - crowd.height) // 2))
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def crowd_table(inspector: ProbeInspector, frame: tuple[int, int] | None) -> None:
    print(f"  {'faces':>5}  " + "".join(f"{f'{side} px':<30}" for side in SIDES))
    for count in CROWDS:
        cells = []
        for side in SIDES:
            counted = []
            for composition in range(COMPOSITIONS):
                data = samples.crowd_jpeg(count, side=side, first=composition * 6)
                if frame is not None:
                    crowd_size = Image.open(io.BytesIO(data)).size
                    if crowd_size[0] > frame[0] or crowd_size[1] > frame[1]:
                        break  # this crowd does not fit the frame
                    data = framed(data, frame)
                counted.append(inspector.inspect_image(data).faces)
            if not counted:
                cells.append("(does not fit)")
                continue
            exact = sum(n == count for n in counted)
            refused = sum(n > CROWD_LIMIT for n in counted)
            mean = statistics.mean(counted) / count
            cells.append(
                f"{mean:6.1%} exact {exact}/{COMPOSITIONS} refused {refused}/{COMPOSITIONS}"
            )
        print(f"  {count:>5}  " + "".join(f"{cell:<30}" for cell in cells))


def measure(detector: str) -> None:
    inspector = ProbeInspector(counter=face_counter(detector))
    print(f"\n== detector: {detector}\n")
    print("crowds of real faces: faces counted / present, exact counts, refused as crowd scans\n")
    crowd_table(inspector, None)
    print(f"\nthe same crowds centred in a {FRAME[0]}x{FRAME[1]} frame\n")
    crowd_table(inspector, FRAME)

    single = [inspector.inspect_image(samples.lfw_face_jpeg(i)).faces for i in range(100)]
    print(f"\n  single LFW faces (150 px): {sum(n == 1 for n in single)}/100 counted as one face")

    free = face_free_images()
    false_faces = [(name, n) for name, data in free if (n := inspector.inspect_image(data).faces)]
    print(f"\nface-free images: {len(free)}; with a face counted: {len(false_faces)} {false_faces}")
    inspector.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--detector", choices=("cnn", "hog"), action="append")
    for detector in parser.parse_args().detector or ("cnn", "hog"):
        measure(detector)


if __name__ == "__main__":
    main()
