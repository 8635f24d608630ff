"""The app icon: every size rendered from the one source image, packed into .ico and .icns, and
the PNGs the app ships are what the source renders to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageChops, ImageStat

REPO = Path(__file__).resolve().parents[2]
ICONS = REPO / "app" / "resources" / "icons"
sys.path.insert(0, str(REPO / "packaging"))

import make_icons  # noqa: E402


def test_icons_in_every_size_from_the_one_svg(tmp_path: Path) -> None:
    # a subprocess: rendering needs a QGuiApplication, and pytest-qt wants its own QApplication
    proc = subprocess.run([sys.executable, str(REPO / "packaging" / "make_icons.py"), "--out", str(tmp_path),
                           "--installers"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    for size in make_icons.PNG_SIZES:
        with Image.open(tmp_path / f"patchbay-{size}.png") as im:
            assert im.size == (size, size) and im.mode == "RGBA"
            assert im.getpixel((0, 0))[3] == 0 and im.getpixel((size // 2, size // 4))[3] == 255  # a tile, no box
    with Image.open(tmp_path / "patchbay.ico") as ico:
        assert ico.info["sizes"] == {(s, s) for s in make_icons.ICO_SIZES}
    with Image.open(tmp_path / "patchbay.icns") as icns:
        have = {w * scale for w, _h, scale in icns.info["sizes"]}
        assert {32, 64, 128, 256, 512, 1024} <= have  # 16@2x ... 512@2x, what a Retina Dock and Finder use

    # the PNGs the app loads are the ones the source renders to today (rerun make_icons.py after an edit)
    for size in make_icons.PNG_SIZES:
        name = f"patchbay-{size}.png"
        with Image.open(ICONS / name) as shipped, Image.open(tmp_path / name) as new:
            diff = ImageStat.Stat(ImageChops.difference(shipped.convert("RGBA"), new.convert("RGBA"))).mean
            assert max(diff) < 1.0, f"app/resources/icons/patchbay-{size}.png is stale: run packaging/make_icons.py"
    assert sorted(p.name for p in ICONS.glob("patchbay*.png")) == sorted(
        f"patchbay-{s}.png" for s in make_icons.PNG_SIZES)


def test_a_broken_source_is_refused_with_a_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "bad.svg"
    bad.write_text("<svg this is not xml")
    proc = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO / 'packaging')!r}); "
                           f"import make_icons; from pathlib import Path; "
                           f"make_icons.render_pngs(Path({str(tmp_path / 'out')!r}), Path({str(bad)!r}))"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert proc.returncode != 0 and "is not a valid SVG image" in proc.stdout
