"""Render Patchbay's app icon, in every size the three platforms ask for, from its one source
image ``app/resources/icons/patchbay.svg``.

    python packaging/make_icons.py                 # the PNGs the app loads -> app/resources/icons/
    python packaging/make_icons.py --out DIR --installers   # + patchbay.ico and patchbay.icns

Qt's SVG renderer (PySide6, already a dependency) draws each size from the vector source, so
small sizes are sharp rather than scaled down; Pillow packs them into the Windows ``.ico``
(16-256) and the macOS ``.icns`` (16-1024, the @2x sizes included).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "app" / "resources" / "icons" / "patchbay.svg"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)


def render_pngs(out: Path, source: Path = SOURCE, sizes: tuple[int, ...] = PNG_SIZES) -> list[Path]:
    """``patchbay-<size>.png`` for each size, drawn from the SVG."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 (QPainter needs one)
    renderer = QSvgRenderer(str(source))
    if not renderer.isValid():
        raise SystemExit(f"{source} is not a valid SVG image; fix it or restore it from git.")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for size in sizes:
        img = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        img.fill(Qt.GlobalColor.transparent)
        p = QPainter(img)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        renderer.render(p)
        p.end()
        path = out / f"patchbay-{size}.png"
        if not img.save(str(path), "PNG"):
            raise SystemExit(f"Could not write {path}.")
        written.append(path)
    return written


def write_installer_icons(pngs: dict[int, Path], out: Path) -> list[Path]:
    """``patchbay.ico`` (Windows) and ``patchbay.icns`` (macOS) from the rendered PNGs."""
    from PIL import Image

    images = {size: Image.open(path).convert("RGBA") for size, path in pngs.items()}
    ico, icns = out / "patchbay.ico", out / "patchbay.icns"
    biggest = images[max(ICO_SIZES)]
    biggest.save(ico, format="ICO", sizes=[(s, s) for s in ICO_SIZES],
                 append_images=[images[s] for s in ICO_SIZES if s != max(ICO_SIZES)])
    top = images[max(ICNS_SIZES)]
    top.save(icns, format="ICNS", append_images=[images[s] for s in ICNS_SIZES if s != max(ICNS_SIZES)])
    return [ico, icns]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=SOURCE.parent, help="folder for the files (default: app/resources/icons)")
    ap.add_argument("--installers", action="store_true", help="also write patchbay.ico and patchbay.icns")
    args = ap.parse_args(argv)
    pngs = render_pngs(args.out)
    written = list(pngs)
    if args.installers:
        written += write_installer_icons({int(p.stem.rsplit("-", 1)[1]): p for p in pngs}, args.out)
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
