"""tools/demo.py with a BiRefNet config on the DIS5K sample images, faithful (resized) and tiled."""
import pytest
from PIL import Image

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("tiled", [False, True])
def test_demo_writes_every_output_on_dis5k(shared_data, load_tool, tmp_path, tiled):
    from focus.data.io import read_image_size

    images = sorted((shared_data / "dis" / "DIS5K-sample").rglob("*.jpg"))
    assert images
    out = tmp_path / "demo"
    opts = ["MODEL.BIREFNET.TILE.ENABLED", str(tiled), "MODEL.BIREFNET.TILE.SIZE", "1024"]
    demo = load_tool("demo")
    assert demo.main(["--config-file", str(ROOT / "configs" / "birefnet" / "tiny.yaml"), "--input",
                      *map(str, images), "--output", str(out), "--malloc", "default", "--opts", *opts]) == 0
    for path in images:
        h, w = read_image_size(str(path))
        for kind, mode in (("mask", "L"), ("soft", "L"), ("cutout", "RGBA"), ("overlay", "RGB")):
            (written,) = out.rglob(f"{path.stem}_{kind}.png")
            with Image.open(written) as im:
                assert (im.mode, im.size) == (mode, (w, h))
