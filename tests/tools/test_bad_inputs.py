"""The bad-input corpus: broken and unusual inputs across the command-line tools, run in-process through the
tools' shared error layer (`focus.engine.cli.run_main`), with the tiny FOCUS (random weights).

Each case asserts the exit status and that no traceback is printed; a user error must name its culprit in one
line, a valid input must give the right output. `CASES` lists them all (the 15 of issue 19's "Why" are marked
`why=True`).
"""
import builtins
import json
import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
import torch
from PIL import Image

from focus.engine.cli import run_main
from focus.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny" / "focus_tiny.yaml")
FAST = ["INPUT.MIN_SIZE_TEST", "32", "INPUT.MAX_SIZE_TEST", "64"]
SMALL_TRAIN = [
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.CROP.SIZE", "[64,64]", "INPUT.SIZE_DIVISIBILITY", "64",
    "INPUT.MIN_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "4", "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256",
    "SOLVER.CHECKPOINT_PERIOD", "1000", "TEST.EVAL_PERIOD", "0", "DATALOADER.NUM_WORKERS", "0",
]

pytestmark = pytest.mark.usefixtures("single_thread")


# ----------------------------------------------------------------------------------------------- the tools
@pytest.fixture(scope="module")
def tools(load_tool):
    return {"demo": load_tool("demo").main, "evaluate_folder": load_tool("evaluate_folder").main,
            "train_net": load_tool("train_net").cli, "convert_dinov2": load_tool("convert_dinov2").main}


@pytest.fixture(autouse=True)
def _quiet_stale_log_handlers(monkeypatch):
    # detectron2's log handlers keep the stdout of the test that created them; a later write to that closed
    # capture must not print logging's own "--- Logging error ---" traceback into this test's output
    monkeypatch.setattr(logging, "raiseExceptions", False)


# ----------------------------------------------------------------------------------------------- the corpus
def _rgb(h, w, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    img[h // 4: 3 * h // 4, w // 4: 3 * w // 4] += 150
    return img


def _mask(h, w):
    m = np.zeros((h, w), np.uint8)
    m[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
    return m


class _WritesAFile:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return builtins.exec, (f"open({self.target!r}, 'w').write('pwned')",)


def _make_corpus(c):
    """Every file the cases use, under `c`."""
    (c / "one").mkdir()
    Image.fromarray(_rgb(48, 64)).save(c / "one" / "good.jpg", quality=90)
    (c / "empty_dir").mkdir()
    (c / "no_images").mkdir()
    (c / "no_images" / "readme.txt").write_text("nothing to see")
    # unusual but valid images
    u = c / "unusual"
    u.mkdir()
    frames = [Image.fromarray(_rgb(40, 50, s)) for s in range(3)]
    frames[0].save(u / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(u / "pages.tif", save_all=True, append_images=frames[1:])
    Image.fromarray(_rgb(40, 50)).convert("CMYK").save(u / "cmyk.jpg")
    Image.fromarray((_rgb(40, 50)[:, :, 0].astype(np.uint16) * 257)).save(u / "gray16.png")
    Image.fromarray(_rgb(40, 50)[:, :, 0].astype(np.float32) / 255.0, mode="F").save(u / "float.tif")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: stored 40x50 (HxW), shown 50x40
    Image.fromarray(_rgb(40, 50)).save(u / "exif_rotated.jpg", exif=exif.tobytes())
    Image.fromarray(_rgb(36, 44)).save(u / "name with spaces é 日本.png")
    # broken images
    b = c / "broken"
    b.mkdir()
    Image.fromarray(_rgb(40, 50)).save(b / "ok.png")
    (b / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a JPEG")
    good = (c / "one" / "good.jpg").read_bytes()
    (b / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (b / "zero_bytes.png").write_bytes(b"")
    (b / "text_as.png").write_text("hello")
    (c / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64)
    Image.fromarray(_rgb(1500, 2000)).save(c / "large.png")
    # weights
    sd = {"backbone.weight": torch.zeros(2, 3)}
    torch.save(sd, c / "tiny_sd.pth")
    (c / "corrupt.pth").write_bytes(b"PK\x03\x04 this zip ends here")
    (c / "corrupt.pkl").write_bytes(b"\x80\x04\x95garbage")
    torch.save({"model": sd, "evil": _WritesAFile(c / "pwned_pth.txt")}, c / "evil.pth")
    with open(c / "evil.pkl", "wb") as f:
        pickle.dump({"model": {"backbone.weight": np.zeros((2, 3), np.float32)},
                     "evil": _WritesAFile(c / "pwned_pkl.txt")}, f)
    torch.save({"conv1.weight": torch.zeros(4, 3, 7, 7), "fc.weight": torch.zeros(2, 4)}, c / "not_dinov2.pth")
    # configs
    (c / "bad_yaml.yaml").write_text("MODEL: [\n")
    (c / "unknown_key.yaml").write_text(f"_BASE_: {TINY}\nMODEL:\n  NOT_A_KEY: 1\n")
    # evaluation folders
    for name in ("gt", "pred", "pred_corrupt", "pred_resized", "pred_other_names"):
        (c / name).mkdir()
    for i in range(4):
        m = _mask(40, 50)
        Image.fromarray(m).save(c / "gt" / f"img{i}.png")
        Image.fromarray(m).save(c / "pred" / f"img{i}.png")
        Image.fromarray(m).save(c / "pred_corrupt" / f"img{i}.png")
        Image.fromarray(_mask(20, 25)).save(c / "pred_resized" / f"img{i}.png")
        Image.fromarray(m).save(c / "pred_other_names" / f"other{i}.png")
    (c / "pred_corrupt" / "img2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    # a training folder: 20 samples, 2 corrupt images, 1 mask of another size
    for root, n in (("train", 20), ("val", 3)):
        (c / root / "im").mkdir(parents=True)
        (c / root / "gt").mkdir(parents=True)
        for i in range(n):
            Image.fromarray(_rgb(64, 64, i)).save(c / root / "im" / f"s{i:02d}.jpg", quality=90)
            Image.fromarray(_mask(64, 64)).save(c / root / "gt" / f"s{i:02d}.png")
    (c / "val_bad" / "im").mkdir(parents=True)
    (c / "val_bad" / "gt").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(_rgb(64, 64, i)).save(c / "val_bad" / "im" / f"v{i}.jpg", quality=90)
        Image.fromarray(_mask(64 if i != 2 else 60, 64)).save(c / "val_bad" / "gt" / f"v{i}.png")
    (c / "val_bad" / "im" / "v1.jpg").write_bytes(b"\xff\xd8\xff corrupt")
    (c / "train" / "im" / "s03.jpg").write_bytes(b"\xff\xd8\xff corrupt")
    (c / "train" / "im" / "s11.jpg").write_bytes((c / "train" / "im" / "s12.jpg").read_bytes()[:200])
    Image.fromarray(_mask(50, 64)).save(c / "train" / "gt" / "s07.png")
    return c


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _make_corpus(tmp_path_factory.mktemp("corpus"))


# ----------------------------------------------------------------------------------------------- the cases
@dataclass
class Case:
    id: str
    tool: str
    argv: Callable  # (corpus, out) -> argv
    status: int
    culprit: Optional[Callable] = None  # (corpus, out) -> text the error output must contain
    check: Optional[Callable] = None  # (corpus, out, stdout, stderr, caplog) -> None, for valid inputs
    why: bool = False  # one of the 15 cases of issue 19's "Why"
    slow: bool = False
    env: dict = field(default_factory=dict)


def demo(inputs, *extra, opts=()):
    return lambda c, o: ["--input", *[str(c / i) for i in inputs], "--output", str(o), *extra,
                         "--opts", *FAST, *[str(x).format(c=c) for x in opts]]


def _outputs(o):
    return sorted(str(p.relative_to(o)) for p in o.rglob("*.png"))


def _expect_outputs(*names):
    def check(c, o, out, err, caplog):
        assert _outputs(o) == sorted(names), _outputs(o)
    return check


def _mask_shape(stem, hw):
    def check(c, o, out, err, caplog):
        assert np.asarray(Image.open(o / f"{stem}_mask.png")).shape == hw
    return check


def _all(*checks):
    def check(*args):
        for ch in checks:
            ch(*args)
    return check


def _warned(text):
    def check(c, o, out, err, caplog):
        assert text in caplog.text, caplog.text
    return check


def evalf(pred, gt="gt", *extra):
    return lambda c, o: ["--pred", str(c / pred), "--gt", str(c / gt), *extra]


TRAIN_DS = "DATASETS.TRAIN", "('folder:sod:{c}/train/im:{c}/train/gt',)"
VAL_DS = "DATASETS.TEST", "('folder:sod:{c}/val/im:{c}/val/gt',)"


def train(*opts, eval_only=False):
    return lambda c, o: ["--config-file", TINY, *(["--eval-only"] if eval_only else []),
                         "OUTPUT_DIR", str(o), *SMALL_TRAIN, *[str(x).format(c=c) for x in VAL_DS + opts]]


def _json(name):
    def check(c, o, out, err, caplog):
        data = json.loads((o / name).read_text())
        assert data["num_images"] == 4 and data["metrics"]["MAE"] == 0.0
    return check


def _perfect(c, o, out, err, caplog):
    assert re.search(r"4 images", out) and "1.0000" in out


def _excluded_one(c, o, out, err, caplog):
    assert "3 images" in out and "1 image(s) excluded" in out and "img2" in out


def _resized(c, o, out, err, caplog):
    assert "4 prediction(s) resized" in out


def _trained_despite_bad_samples(c, o, out, err, caplog):
    """Issue 19's "done when": 20 samples, 2 corrupt images and 1 mis-sized mask; the run finishes, reports the
    3 skipped files, and its checkpoint loads."""
    from detectron2.modeling import build_model

    from focus.engine import setup_cfg
    from focus.modeling.checkpoint import FOCUSCheckpointer

    skipped = dict(line.split("\t", 1) for line in (o / "bad_samples.tsv").read_text().splitlines())
    assert sorted(Path(p).name for p in skipped) == ["s03.jpg", "s07.png", "s11.jpg"], skipped
    assert "3 bad sample(s) skipped during training" in caplog.text
    for name in ("s03.jpg", "s07.png", "s11.jpg"):
        assert name in caplog.text
    model = build_model(setup_cfg(TINY, ["MODEL.DEVICE", "cpu"]))
    saved = torch.load(o / "model_final.pth", weights_only=True)["model"]
    FOCUSCheckpointer(model).load(str(o / "model_final.pth"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def _no_pwn(c, o, out, err, caplog):
    assert not (c / "pwned_pth.txt").exists() and not (c / "pwned_pkl.txt").exists()


CASES = [
    # --- demo: configuration and weights
    Case("demo_unknown_config_key", "demo", demo(["one"], opts=["MODEL.NOT_A_KEY", "1"]), 2,
         lambda c, o: "MODEL.NOT_A_KEY", why=True),
    Case("demo_config_value_wrong_type", "demo", demo(["one"], opts=["SOLVER.MAX_ITER", "many"]), 2,
         lambda c, o: "SOLVER.MAX_ITER", why=True),
    Case("demo_unknown_meta_architecture", "demo", demo(["one"], opts=["MODEL.META_ARCHITECTURE", "NoSuchNet"]), 2,
         lambda c, o: "NoSuchNet"),
    Case("demo_unknown_test_mapper", "demo", demo(["one"], opts=["INPUT.TEST_MAPPER_NAME", "no_such_mapper"]), 2,
         lambda c, o: "no_such_mapper"),
    Case("demo_cuda_device_without_gpu", "demo", demo(["one"], opts=["MODEL.DEVICE", "cuda"]), 2,
         lambda c, o: "MODEL.DEVICE"),
    Case("demo_output_is_a_file", "demo", lambda c, o: ["--input", str(c / "one"), "--output", str(c / "large.png"),
                                                       "--save", "mask", "--opts", *FAST], 1,
         lambda c, o: "large.png"),
    Case("demo_odd_overrides", "demo", demo(["one"], opts=["SOLVER.MAX_ITER"]), 2, lambda c, o: "KEY VALUE"),
    Case("demo_unknown_key_in_config_file", "demo",
         lambda c, o: ["--config-file", str(c / "unknown_key.yaml"), "--input", str(c / "one"), "--output", str(o)],
         2, lambda c, o: "MODEL.NOT_A_KEY"),
    Case("demo_bad_yaml", "demo",
         lambda c, o: ["--config-file", str(c / "bad_yaml.yaml"), "--input", str(c / "one"), "--output", str(o)],
         2, lambda c, o: "bad_yaml.yaml"),
    Case("demo_missing_config_file", "demo",
         lambda c, o: ["--config-file", str(c / "nope.yaml"), "--input", str(c / "one"), "--output", str(o)],
         2, lambda c, o: "nope.yaml"),
    Case("demo_missing_weights", "demo", demo(["one"], opts=["MODEL.WEIGHTS", "{c}/missing.pth"]), 2,
         lambda c, o: "missing.pth", why=True),
    Case("demo_corrupt_weights", "demo", demo(["one"], opts=["MODEL.WEIGHTS", "{c}/corrupt.pth"]), 2,
         lambda c, o: "corrupt.pth", why=True),
    Case("demo_corrupt_pkl_weights", "demo", demo(["one"], opts=["MODEL.WEIGHTS", "{c}/corrupt.pkl"]), 2,
         lambda c, o: "corrupt.pkl"),
    Case("demo_malicious_pth_weights", "demo", demo(["one"], opts=["MODEL.WEIGHTS", "{c}/evil.pth"]), 2,
         lambda c, o: "evil.pth", check=_no_pwn),
    Case("demo_malicious_pkl_weights", "demo", demo(["one"], opts=["MODEL.WEIGHTS", "{c}/evil.pkl"]), 2,
         lambda c, o: "evil.pkl", check=_no_pwn),
    Case("demo_partial_state_dict_weights", "demo", demo(["one"], "--save", "mask",
                                                         opts=["MODEL.WEIGHTS", "{c}/tiny_sd.pth"]), 0,
         check=_expect_outputs("good_mask.png")),
    # --- demo: inputs and options
    Case("demo_save_comma_form", "demo", demo(["one"], "--save", "mask,soft,cutout,overlay"), 0,
         check=_expect_outputs("good_mask.png", "good_soft.png", "good_cutout.png", "good_overlay.png"), why=True),
    Case("demo_save_separate_words", "demo", demo(["one"], "--save", "mask", "soft"), 0,
         check=_expect_outputs("good_mask.png", "good_soft.png")),
    Case("demo_save_mixed_forms", "demo", demo(["one"], "--save", "mask,", "overlay"), 0,
         check=_expect_outputs("good_mask.png", "good_overlay.png")),
    Case("demo_save_unknown_kind", "demo", demo(["one"], "--save", "mask,contour"), 2, lambda c, o: "contour"),
    Case("demo_folder_without_images", "demo", demo(["no_images"]), 2, lambda c, o: "no_images", why=True),
    Case("demo_empty_folder", "demo", demo(["empty_dir"]), 2, lambda c, o: "empty_dir"),
    Case("demo_missing_input", "demo", demo(["does_not_exist"]), 2, lambda c, o: "does_not_exist"),
    Case("demo_no_output", "demo", lambda c, o: ["--input", str(c / "one")], 2, lambda c, o: "--output"),
    Case("demo_animated_gif", "demo", demo(["unusual/animated.gif"], "--save", "mask"), 0,
         check=_all(_expect_outputs("animated_mask.png"), _mask_shape("animated", (40, 50)),
                    _warned("first frame")), why=True),
    Case("demo_multipage_tiff", "demo", demo(["unusual/pages.tif"], "--save", "mask"), 0,
         check=_all(_expect_outputs("pages_mask.png"), _warned("first frame"))),
    Case("demo_cmyk_jpeg", "demo", demo(["unusual/cmyk.jpg"], "--save", "mask"), 0,
         check=_mask_shape("cmyk", (40, 50))),
    Case("demo_16bit_png", "demo", demo(["unusual/gray16.png"], "--save", "mask"), 0,
         check=_mask_shape("gray16", (40, 50))),
    Case("demo_float_tiff", "demo", demo(["unusual/float.tif"], "--save", "mask"), 0,
         check=_mask_shape("float", (40, 50))),
    Case("demo_exif_orientation", "demo", demo(["unusual/exif_rotated.jpg"], "--save", "mask"), 0,
         check=_mask_shape("exif_rotated", (50, 40))),
    Case("demo_name_spaces_non_ascii", "demo", demo(["unusual/name with spaces é 日本.png"], "--save", "mask"), 0,
         check=_mask_shape("name with spaces é 日本", (36, 44))),
    Case("demo_whole_unusual_folder", "demo", demo(["unusual"], "--save", "mask"), 0,
         check=lambda c, o, out, err, caplog: (len(_outputs(o)) == 7) or pytest.fail(str(_outputs(o)))),
    Case("demo_broken_images_skipped", "demo", demo(["broken"], "--save", "mask"), 1,
         lambda c, o: "garbage.jpg",
         check=_all(_expect_outputs("ok_mask.png"),
                    lambda c, o, out, err, caplog: all(n in err for n in ("truncated.jpg", "zero_bytes.png",
                                                                          "text_as.png")) or pytest.fail(err))),
    Case("demo_heic_without_plugin", "demo", demo(["photo.heic"]), 1, lambda c, o: "photo.heic"),
    Case("demo_large_image_full_size_output", "demo", demo(["large.png"], "--save", "mask"), 0,
         check=_mask_shape("large", (1500, 2000))),
    # --- evaluate_folder
    Case("eval_valid", "evaluate_folder", lambda c, o: evalf("pred")(c, o) + ["--output", str(o / "r" / "res.json")],
         0, check=_all(_perfect, _json("r/res.json"))),
    Case("eval_missing_prediction_folder", "evaluate_folder", evalf("no_preds_here"), 2,
         lambda c, o: "no_preds_here", why=True),
    Case("eval_empty_gt_folder", "evaluate_folder", evalf("pred", "empty_dir"), 2, lambda c, o: "empty_dir",
         why=True),
    Case("eval_missing_gt_folder", "evaluate_folder", evalf("pred", "no_gt_here"), 2, lambda c, o: "no_gt_here"),
    Case("eval_empty_prediction_folder", "evaluate_folder", evalf("empty_dir"), 2, lambda c, o: "empty_dir"),
    Case("eval_corrupt_prediction_png", "evaluate_folder", evalf("pred_corrupt"), 0, check=_excluded_one,
         why=True),
    Case("eval_prediction_of_other_size", "evaluate_folder", evalf("pred_resized"), 0, check=_resized),
    Case("eval_no_matching_names", "evaluate_folder", evalf("pred_other_names"), 2,
         lambda c, o: "pred_other_names"),
    Case("eval_unknown_protocol", "evaluate_folder", evalf("pred", "gt", "--protocol", "mine"), 2,
         lambda c, o: "mine"),
    Case("eval_prediction_folder_is_a_file", "evaluate_folder", evalf("large.png"), 2, lambda c, o: "large.png"),
    # --- train_net
    Case("train_unknown_config_key", "train_net", train("MODEL.NOT_A_KEY", "1"), 2, lambda c, o: "MODEL.NOT_A_KEY",
         why=True),
    Case("train_config_value_wrong_type", "train_net", train("SOLVER.BASE_LR", "fast"), 2,
         lambda c, o: "SOLVER.BASE_LR", why=True),
    Case("train_unknown_dataset", "train_net", train("DATASETS.TRAIN", "('no_such_dataset',)"), 2,
         lambda c, o: "no_such_dataset", why=True),
    Case("eval_only_unknown_dataset", "train_net",
         train("DATASETS.TEST", "('no_such_test_set',)", eval_only=True), 2, lambda c, o: "no_such_test_set",
         why=True),
    Case("train_missing_folder_dataset", "train_net",
         train("DATASETS.TRAIN", "('folder:sod:{c}/nowhere/im:{c}/nowhere/gt',)"), 2, lambda c, o: "nowhere/im",
         why=True),
    Case("train_bad_folder_dataset_name", "train_net", train("DATASETS.TRAIN", "('folder:sod:{c}/train/im',)"), 2,
         lambda c, o: "folder:<task>"),
    Case("train_unknown_train_mapper", "train_net", train(*TRAIN_DS, "INPUT.DATASET_MAPPER_NAME", "nope_mapper"), 2,
         lambda c, o: "nope_mapper"),
    Case("train_cuda_device_without_gpu", "train_net", train(*TRAIN_DS, "MODEL.DEVICE", "cuda:0"), 2,
         lambda c, o: "MODEL.DEVICE"),
    Case("train_missing_weights", "train_net", train(*TRAIN_DS, "MODEL.WEIGHTS", "{c}/missing.pth"), 2,
         lambda c, o: "missing.pth"),
    Case("eval_only_corrupt_weights", "train_net",
         train(*VAL_DS, "MODEL.WEIGHTS", "{c}/corrupt.pth", eval_only=True), 2, lambda c, o: "corrupt.pth"),
    Case("train_malicious_weights", "train_net", train(*TRAIN_DS, "MODEL.WEIGHTS", "{c}/evil.pth"), 2,
         lambda c, o: "evil.pth", check=_no_pwn),
    Case("train_too_many_bad_samples", "train_net",
         train(*TRAIN_DS, "SOLVER.MAX_ITER", "6", "DATALOADER.MAX_BAD_SAMPLE_FRACTION", "0.05"), 2,
         lambda c, o: "MAX_BAD_SAMPLE_FRACTION"),
    Case("train_too_many_bad_samples_in_a_worker", "train_net",
         train(*TRAIN_DS, "SOLVER.MAX_ITER", "6", "DATALOADER.MAX_BAD_SAMPLE_FRACTION", "0.05",
               "DATALOADER.NUM_WORKERS", "1"), 2, lambda c, o: "MAX_BAD_SAMPLE_FRACTION"),
    Case("train_with_corrupt_images_and_missized_mask", "train_net", train(*TRAIN_DS, "SOLVER.MAX_ITER", "6"),
         0,
         check=_trained_despite_bad_samples, why=True),
    Case("train_missing_test_dataset_checked_first", "train_net",
         train(*TRAIN_DS, "DATASETS.TEST", "('folder:sod:{c}/val/im:{c}/absent_gt',)"), 2,
         lambda c, o: "absent_gt", check=lambda c, o, out, err, caplog: (not (o / "model_final.pth").exists()) or
         pytest.fail("trained before checking the test set")),
    Case("eval_only_bad_test_images_excluded", "train_net",
         train("DATASETS.TEST", "('folder:sod:{c}/val_bad/im:{c}/val_bad/gt',)", eval_only=True), 0,
         check=lambda c, o, out, err, caplog: ("2 image(s) excluded" in out and "v1.jpg" in out and "v2.png" in out
                                               and "(2 images, 2 excluded)" in out) or pytest.fail(out[-2000:])),
    Case("train_missing_config_file", "train_net", lambda c, o: ["--config-file", str(c / "nope.yaml")], 2,
         lambda c, o: "nope.yaml"),
    # --- convert_dinov2
    Case("convert_missing_source", "convert_dinov2", lambda c, o: [str(c / "nope.pth"), str(o / "out.pkl")], 2,
         lambda c, o: "nope.pth"),
    Case("convert_malicious_source", "convert_dinov2", lambda c, o: [str(c / "evil.pth"), str(o / "out.pkl")], 2,
         lambda c, o: "evil.pth", check=_no_pwn),
    Case("convert_not_a_dinov2_checkpoint", "convert_dinov2",
         lambda c, o: [str(c / "not_dinov2.pth"), str(o / "out.pkl")], 2, lambda c, o: "conv1.weight",
         check=lambda c, o, out, err, caplog: (not (o / "out.pkl").exists()) or pytest.fail("half-written output")),
]


def test_corpus_is_complete():
    assert len(CASES) >= 40
    assert sum(c.why for c in CASES) >= 15
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tools, corpus, tmp_path, capsys, caplog, monkeypatch):
    out = tmp_path / "out"
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("FOCUS_DEBUG", raising=False)
    argv = case.argv(corpus, out)
    with caplog.at_level(logging.WARNING):
        try:
            status = run_main(tools[case.tool], argv, prog=case.tool)
        except SystemExit as e:  # argparse
            status = e.code
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert status == case.status, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    if case.culprit is not None:
        errors = [line for line in captured.err.splitlines() if "error:" in line or line.startswith("FAILED")]
        assert errors, captured.err[-3000:]
        culprit = case.culprit(corpus, out)
        assert any(culprit in line for line in errors), (culprit, errors)
    if case.check is not None:
        case.check(corpus, out, captured.out, captured.err, caplog)


def test_debug_shows_the_traceback(tools, corpus, tmp_path, monkeypatch):
    argv = demo(["one"], opts=["MODEL.NOT_A_KEY", "1"])(corpus, tmp_path)
    with pytest.raises(UserError, match="MODEL.NOT_A_KEY"):
        run_main(tools["demo"], argv + ["--debug"])
    monkeypatch.setenv("FOCUS_DEBUG", "1")
    with pytest.raises(UserError, match="MODEL.NOT_A_KEY"):
        run_main(tools["demo"], argv)


def test_internal_errors_keep_their_traceback():
    def broken_tool(argv):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_main(broken_tool, [])


def test_ctrl_c_is_one_line(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_main(interrupted, [], prog="tool") == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err
