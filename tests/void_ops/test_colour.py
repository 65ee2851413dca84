"""void_ops.colour against real OpenColorIO (the built-in ACES studio config) and real OIIO headers."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voidflow.void_ops.colour import (
    BUILTIN_CONFIG,
    ColourTags,
    ModelView,
    PlateColour,
    check_colourspace,
    config_id,
    infer_plate_colour,
    is_scene_referred,
    load_config,
    to_colourspace,
    video_tags_for,
)
from voidflow.void_ops.exceptions import ConfigurationError, InvalidInput

ocio = pytest.importorskip("PyOpenColorIO")

AP1 = (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767)
REC709 = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config() -> Any:
    return load_config()


def infer(config: Any, **overrides: Any) -> PlateColour:
    """infer_plate_colour with an integer, untagged movie as the default plate."""
    args: dict[str, Any] = {
        "file": "/plates/sh010.mov",
        "kind": "movie",
        "codec": "prores",
        "is_float": False,
        "tags": ColourTags(),
        "attributes": {},
        "declared": None,
    }
    args.update(overrides)
    return infer_plate_colour(config, **args)


def srgb_oetf(x: np.ndarray) -> np.ndarray:
    """The sRGB piecewise OETF in float64, the independent reference for the model view."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.maximum(x, 0), 1 / 2.4) - 0.055)


def ocio_convert(values: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Convert with PyOpenColorIO directly, not through void_ops.colour."""
    out = np.ascontiguousarray(values, dtype=np.float32).copy()
    cfg = ocio.Config.CreateFromBuiltinConfig("studio-config-latest")
    cfg.getProcessor(src, dst).getDefaultCPUProcessor().applyRGB(out.reshape(-1, 3))
    return out


# --- import hygiene and API ---------------------------------------------------------------------------------------


def test_import_does_not_load_opencolorio() -> None:
    code = "import sys, void_ops.colour; sys.exit('PyOpenColorIO' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


# --- configs ------------------------------------------------------------------------------------------------------


def test_default_config_is_the_builtin_studio_config(config: Any) -> None:
    assert load_config(None) is load_config(BUILTIN_CONFIG) is config
    assert config.getName().startswith("studio-config-")
    assert config.getColorSpace("ACEScg") is not None
    assert config_id(None) == config_id(BUILTIN_CONFIG) == config.getName()


def test_missing_config_file_is_a_one_line_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "show" / "config.ocio"
    with pytest.raises(ConfigurationError, match="cannot read") as info:
        load_config(str(missing))
    assert str(missing) in str(info.value) and "\n" not in str(info.value)


def test_malformed_config_file_names_ocios_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ocio"
    bad.write_text("ocio_profile_version: 2\ncolorspaces: [[[\n")
    with pytest.raises(ConfigurationError) as info:
        load_config(str(bad))
    message = str(info.value)
    assert str(bad) in message and "yaml" in message.lower() and "\n" not in message


def test_unknown_builtin_uri_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="ocio://no-such-config"):
        load_config("ocio://no-such-config")


def test_custom_config_file_loads_and_its_id_follows_its_bytes(config: Any, tmp_path: Path) -> None:
    path = tmp_path / "show.ocio"
    path.write_text(config.serialize())
    custom = load_config(str(path))
    assert check_colourspace(custom, "acescct", what="test") == "ACEScct"
    first = config_id(str(path))
    assert first == f"{path.resolve()} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"

    path.write_text(config.serialize() + "\n# edited for the show\n")
    assert config_id(str(path)) != first
    assert load_config(str(path)) is not custom  # the edited file is loaded again, not served stale


# --- colour-space names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("ACEScg", "ACEScg"),
        ("acescg", "ACEScg"),
        ("lin_ap1_scene", "ACEScg"),
        ("scene_linear", "ACEScg"),
        ("srgb_texture", "sRGB Encoded Rec.709 (sRGB)"),
        ("arri_logc4", "ARRI LogC4"),
    ],
)
def test_check_colourspace_resolves_case_aliases_and_roles(config: Any, name: str, canonical: str) -> None:
    assert check_colourspace(config, name, what="sidecar colourspace") == canonical


def test_check_colourspace_rejects_an_unknown_name_with_close_matches(config: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        check_colourspace(config, "ACEScgg", what="sidecar colourspace")
    message = str(info.value)
    assert message.startswith(
        f"sidecar colourspace: unknown colour space 'ACEScgg' in OCIO config {config.getName()!r}"
    )
    assert "'ACEScg'" in message and "\n" not in message


def test_check_colourspace_says_when_a_view_is_given_for_a_colour_space(config: Any) -> None:
    with pytest.raises(InvalidInput, match="that is a view, not a colour space"):
        check_colourspace(config, "ACES 2.0 - SDR 100 nits (Rec.709)", what="--colourspace")


@pytest.mark.parametrize(
    ("name", "scene"),
    [
        ("ACEScg", True),
        ("ACES2065-1", True),
        ("ACEScct", True),
        ("ARRI LogC4", True),
        ("Linear Rec.709 (sRGB)", True),
        ("sRGB Encoded Rec.709 (sRGB)", False),
        ("Gamma 2.4 Encoded Rec.709", False),
        ("Camera Rec.709", False),
        ("Rec.1886 Rec.709 - Display", False),
        ("Rec.2100-PQ - Display", False),
        ("Raw", False),
    ],
)
def test_is_scene_referred_follows_the_studio_config(config: Any, name: str, scene: bool) -> None:
    assert is_scene_referred(config, name) is scene


# --- inference ----------------------------------------------------------------------------------------------------


def test_exr_with_ap1_chromaticities_is_acescg(config: Any) -> None:
    plate = infer(
        config, file="/p/a.####.exr", kind="sequence", codec="exr", is_float=True, attributes={"chromaticities": AP1}
    )
    assert plate == PlateColour("ACEScg", "inferred", "EXR chromaticities are AP1 (ACEScg)", True)


def test_float_exr_without_chromaticities_is_linear_rec709(config: Any) -> None:
    plate = infer(config, file="/p/a.####.exr", kind="sequence", codec="exr", is_float=True)
    assert (plate.name, plate.source, plate.scene_referred) == ("Linear Rec.709 (sRGB)", "inferred", True)
    assert "without chromaticities" in plate.evidence


def test_bt709_movie_is_display_referred(config: Any) -> None:
    plate = infer(config, tags=ColourTags("bt709", "bt709", "bt709", "tv"))
    assert plate == PlateColour("Rec.1886 Rec.709 - Display", "inferred", "movie tags bt709/bt709/bt709", False)


def test_untagged_movie_is_rec709_display(config: Any) -> None:
    plate = infer(config, tags=ColourTags(transfer="unknown"))  # ffprobe's word for untagged
    assert (plate.name, plate.scene_referred) == ("Rec.1886 Rec.709 - Display", False)
    assert "unspecified" in plate.evidence


def test_hdr_movies_are_passed_through_as_display_referred(config: Any) -> None:
    plate = infer(config, tags=ColourTags("bt2020", "smpte2084", "bt2020nc"), is_float=False)
    assert (plate.name, plate.scene_referred) == ("Rec.2100-PQ - Display", False)


def test_linear_tagged_movie_asks_for_a_declaration(config: Any) -> None:
    with pytest.raises(InvalidInput, match=r"^/plates/sh010.mov: movie transfer is tagged 'linear'.*declare"):
        infer(config, tags=ColourTags(transfer="linear"))


def test_integer_png_sequence_is_srgb_encoded(config: Any) -> None:
    plate = infer(config, file="/p/a.####.png", kind="sequence", codec="png")
    assert (plate.name, plate.source, plate.scene_referred) == ("sRGB Encoded Rec.709 (sRGB)", "inferred", False)


def test_log_dpx_without_declaration_is_refused(config: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        infer(
            config,
            file="/p/a.####.dpx",
            kind="sequence",
            codec="dpx",
            attributes={"dpx:Transfer": "Printing density", "oiio:ColorSpace": "KodakLog"},
        )
    message = str(info.value)
    assert message.startswith("/p/a.####.dpx: log DPX") and "declared colour space" in message
    assert "ACEScct" in message and "\n" not in message


def test_video_dpx_is_rec709_display_whatever_oiio_guesses(config: Any) -> None:
    plate = infer(
        config,
        file="/p/a.####.dpx",
        kind="sequence",
        codec="dpx",
        attributes={"dpx:Transfer": "ITU-R 709-4", "oiio:ColorSpace": "srgb_rec709_scene"},
    )
    assert (plate.name, plate.scene_referred) == ("Rec.1886 Rec.709 - Display", False)


def test_declared_arri_logc4_on_a_dpx_is_accepted(config: Any) -> None:
    plate = infer(
        config,
        file="/p/a.####.dpx",
        kind="sequence",
        codec="dpx",
        attributes={"dpx:Transfer": "Printing density"},
        declared="arri_logc4",
        declared_by="sidecar colourspace",
    )
    assert plate == PlateColour("ARRI LogC4", "declared", "sidecar colourspace 'arri_logc4' (ARRI LogC4)", True)


def test_declared_scene_linear_on_a_bt709_movie_is_a_contradiction(config: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        infer(config, tags=ColourTags("bt709", "bt709", "bt709"), declared="ACEScg", declared_by="sidecar colourspace")
    message = str(info.value)
    assert message.startswith("/plates/sh010.mov: sidecar colourspace 'ACEScg' is scene-linear")
    assert "'bt709'" in message and "\n" not in message


def test_declared_log_on_a_bt709_movie_is_accepted(config: Any) -> None:
    # camera log in ProRes is routinely tagged bt709
    plate = infer(config, tags=ColourTags("bt709", "bt709", "bt709"), declared="ARRI LogC4")
    assert (plate.name, plate.source, plate.scene_referred) == ("ARRI LogC4", "declared", True)


def test_declared_acescg_on_a_rec709_exr_is_a_contradiction(config: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        infer(
            config,
            file="/p/b.####.exr",
            kind="sequence",
            codec="exr",
            is_float=True,
            attributes={"chromaticities": REC709},
            declared="ACEScg",
        )
    message = str(info.value)
    assert message.startswith("/p/b.####.exr: declared 'ACEScg'") and "Rec.709" in message and "\n" not in message


@pytest.mark.parametrize(
    ("chromaticities", "declared"),
    [(AP1, "ACEScg"), (AP1, "ACEScct"), (REC709, "Linear Rec.709 (sRGB)"), (REC709, "sRGB Encoded Rec.709 (sRGB)")],
)
def test_declared_spaces_with_the_exrs_primaries_are_accepted(
    config: Any, chromaticities: tuple[float, ...], declared: str
) -> None:
    plate = infer(
        config,
        file="/p/b.####.exr",
        kind="sequence",
        codec="exr",
        is_float=True,
        attributes={"chromaticities": chromaticities},
        declared=declared,
    )
    assert (plate.name, plate.source) == (declared, "declared")


def test_declared_unknown_name_names_the_file_and_the_declarer(config: Any) -> None:
    with pytest.raises(InvalidInput, match=r"^/plates/sh010.mov: sidecar colourspace: unknown colour space 'LogC5'"):
        infer(config, declared="LogC5", declared_by="sidecar colourspace")


@pytest.mark.parametrize(
    ("name", "spec", "pixels", "attributes", "expected"),
    [
        ("ap1.exr", "half", np.float32, {"chromaticities": AP1}, "ACEScg"),
        ("plain.exr", "half", np.float32, {}, "Linear Rec.709 (sRGB)"),
        ("tagged.exr", "half", np.float32, {"oiio:ColorSpace": "ACEScg"}, "ACEScg"),
        ("frame.png", "uint8", np.uint8, {}, "sRGB Encoded Rec.709 (sRGB)"),
        ("frame.tif", "uint16", np.uint16, {}, "sRGB Encoded Rec.709 (sRGB)"),
    ],
)
def test_inference_from_headers_written_by_openimageio(
    config: Any, tmp_path: Path, name: str, spec: str, pixels: type, attributes: dict[str, Any], expected: str
) -> None:
    oiio = pytest.importorskip("OpenImageIO")
    path = tmp_path / name
    image_spec = oiio.ImageSpec(4, 4, 3, spec)
    for key, value in attributes.items():
        if key == "chromaticities":
            image_spec.attribute(key, oiio.TypeDesc("float[8]"), value)
        else:
            image_spec.attribute(key, value)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), image_spec)
    out.write_image(np.zeros((4, 4, 3), pixels))
    out.close()
    reader = oiio.ImageInput.open(str(path))
    read_spec = reader.spec()
    header = {attribute.name: attribute.value for attribute in read_spec.extra_attribs}
    is_float = read_spec.format.basetype in (oiio.HALF, oiio.FLOAT)
    reader.close()
    codec = {".exr": "exr", ".png": "png", ".tif": "tiff"}[path.suffix]
    plate = infer(config, file=str(path), kind="sequence", codec=codec, is_float=is_float, attributes=header)
    assert (plate.name, plate.source) == (expected, "inferred")


# --- the model view -----------------------------------------------------------------------------------------------


def test_model_view_is_the_identity_for_display_referred_plates() -> None:
    view = ModelView(config_spec=None, plate_space="Rec.1886 Rec.709 - Display", scene_referred=False)
    frames = np.arange(2 * 2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 2, 3)
    assert view.to_model(frames) is frames
    assert view.from_model(frames) is frames
    assert str(view.params()["transform"]).startswith("identity")


def test_model_view_keeps_exposure_below_the_knee() -> None:
    view = ModelView(config_spec=None, plate_space="ACEScg", scene_referred=True)
    rec709 = np.random.default_rng(0).uniform(0.0, 0.79, (2, 8, 8, 3)).astype(np.float32)
    rec709[0, 0, 0] = 0.18
    acescg = ocio_convert(rec709, "Linear Rec.709 (sRGB)", "ACEScg")
    expected = srgb_oetf(ocio_convert(acescg, "ACEScg", "Linear Rec.709 (sRGB)"))
    seen = view.to_model(acescg)
    assert seen.dtype == np.float32 and seen.shape == acescg.shape
    np.testing.assert_allclose(seen, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(seen[0, 0, 0], 1.055 * 0.18 ** (1 / 2.4) - 0.055, rtol=0, atol=1e-5)  # 18% grey


def test_model_view_output_lies_in_unit_range_for_highlights_and_out_of_gamut() -> None:
    view = ModelView(config_spec=None, plate_space="ACEScg", scene_referred=True)
    frames = np.random.default_rng(1).uniform(-0.5, 50.0, (2, 16, 16, 3)).astype(np.float32)
    frames[0, 0, 0] = (1e4, 0.0, 0.0)  # far out of Rec.709 gamut and very bright
    seen = view.to_model(frames)
    assert seen.min() >= 0.0 and seen.max() < 1.0


def test_model_view_round_trips_in_gamut_values_up_to_six() -> None:
    view = ModelView(config_spec=None, plate_space="ACEScg", scene_referred=True)
    rec709 = np.random.default_rng(2).uniform(0.0, 6.0, (3, 16, 16, 3)).astype(np.float32)
    rec709[0, 0, :3] = [(6.0, 6.0, 6.0), (6.0, 0.0, 0.0), (0.0, 0.0, 0.0)]
    acescg = ocio_convert(rec709, "Linear Rec.709 (sRGB)", "ACEScg")
    back = view.from_model(view.to_model(acescg))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, acescg, rtol=1e-4, atol=1e-6)


def test_model_view_round_trips_a_log_plate() -> None:
    view = ModelView(config_spec=None, plate_space="ACEScct", scene_referred=True)
    rec709 = np.random.default_rng(3).uniform(0.0, 6.0, (2, 8, 8, 3)).astype(np.float32)
    acescct = ocio_convert(ocio_convert(rec709, "Linear Rec.709 (sRGB)", "ACEScg"), "ACEScg", "ACEScct")
    np.testing.assert_allclose(view.from_model(view.to_model(acescct)), acescct, rtol=0, atol=1e-5)


def test_model_view_roll_off_is_monotonic() -> None:
    view = ModelView(config_spec=None, plate_space="Linear Rec.709 (sRGB)", scene_referred=True)
    ramp = np.linspace(0.0, 100.0, 20001, dtype=np.float32)
    seen = view.to_model(np.repeat(ramp[None, None, :, None], 3, axis=3))[0, 0, :, 0]
    assert np.all(np.diff(seen) >= 0)
    assert np.all(np.diff(seen[ramp <= 10.0]) > 0)
    assert seen[-1] < 1.0


def test_model_view_roll_off_is_c1_at_the_knee() -> None:
    view = ModelView(config_spec=None, plate_space="Linear Rec.709 (sRGB)", scene_referred=True, knee=0.8)
    h = 1e-3
    grey = np.array([0.8 - h, 0.8, 0.8 + h], dtype=np.float32)
    seen = view.to_model(np.repeat(grey[None, None, :, None], 3, axis=3))[0, 0, :, 0].astype(np.float64)
    left, right = (seen[1] - seen[0]) / h, (seen[2] - seen[1]) / h
    assert right / left == pytest.approx(1.0, abs=1e-2)  # a kink (e.g. a hard clip) would give 0


def test_model_view_maps_display_white_back_to_a_finite_maximum() -> None:
    view = ModelView(config_spec=None, plate_space="Linear Rec.709 (sRGB)", scene_referred=True)
    back = view.from_model(np.ones((1, 1, 1, 3), np.float32))
    assert np.all(np.isfinite(back))
    inverse_max = view.params()["inverse_max"]
    assert isinstance(inverse_max, float)
    np.testing.assert_allclose(back, inverse_max, rtol=1e-6)
    assert 3e4 < float(back.max()) < 5e4  # about k - c + c**2 * 1e6 for knee 0.8


def test_model_view_refuses_model_frames_outside_unit_range() -> None:
    view = ModelView(config_spec=None, plate_space="ACEScg", scene_referred=True)
    with pytest.raises(InvalidInput, match=r"frames must lie in \[0, 1\]"):
        view.from_model(np.full((1, 1, 1, 3), 1.5, np.float32))


def test_model_view_rejects_a_knee_outside_zero_one() -> None:
    with pytest.raises(InvalidInput, match="knee must lie in"):
        ModelView(config_spec=None, plate_space="ACEScg", scene_referred=True, knee=1.0)


def test_model_view_params_are_json_provenance(config: Any) -> None:
    params = ModelView(config_spec=None, plate_space="ACEScg", scene_referred=True).params()
    assert json.loads(json.dumps(params)) == params
    assert params["config"] == config.getName() and params["plate_space"] == "ACEScg" and params["knee"] == 0.8
    assert isinstance(params["version"], str) and "roll-off" in str(params["transform"])


# --- conversions --------------------------------------------------------------------------------------------------


def test_to_colourspace_round_trips_acescg_through_acescct() -> None:
    frames = np.random.default_rng(4).uniform(0.0, 10.0, (2, 8, 8, 3)).astype(np.float32)
    before = frames.copy()
    cct = to_colourspace(frames, config_spec=None, src="ACEScg", dst="ACEScct")
    back = to_colourspace(cct, config_spec=None, src="ACEScct", dst="ACEScg")
    np.testing.assert_array_equal(frames, before)  # the input is not modified
    assert cct.dtype == np.float32 and cct.flags.c_contiguous
    np.testing.assert_allclose(back, frames, rtol=1e-5, atol=1e-6)


def test_to_colourspace_gives_acescct_of_mid_grey() -> None:
    grey = np.full((1, 1, 1, 3), 0.18, np.float32)
    cct = to_colourspace(grey, config_spec=None, src="ACEScg", dst="acescct_ap1")
    np.testing.assert_allclose(cct, 0.4135884, atol=1e-5)


def test_to_colourspace_rejects_an_unknown_space() -> None:
    with pytest.raises(InvalidInput, match="to_colourspace dst: unknown colour space 'ACEScx'"):
        to_colourspace(np.zeros((1, 1, 1, 3), np.float32), config_spec=None, src="ACEScg", dst="ACEScx")


# --- video tags ---------------------------------------------------------------------------------------------------


def test_untagged_hd_is_bt709_video_range() -> None:
    assert video_tags_for(1080, ColourTags()) == ColourTags("bt709", "bt709", "bt709", "tv")
    assert video_tags_for(720, ColourTags()).matrix == "bt709"


def test_untagged_sd_is_bt601() -> None:
    assert video_tags_for(480, ColourTags()) == ColourTags("smpte170m", "smpte170m", "smpte170m", "tv")


def test_video_tags_for_keeps_the_files_fields() -> None:
    given = ColourTags(primaries="bt2020", transfer="arib-std-b67", range="pc")
    assert video_tags_for(2160, given) == ColourTags("bt2020", "arib-std-b67", "bt709", "pc")
    assert video_tags_for(576, ColourTags(matrix="bt470bg")).matrix == "bt470bg"


def test_colour_tags_treat_ffmpegs_unknown_as_unspecified() -> None:
    tags = ColourTags(primaries="unknown", transfer="unspecified", matrix="", range=None)
    assert tags.is_empty and tags == ColourTags()
    assert not ColourTags(range="tv").is_empty
    with pytest.raises(InvalidInput, match="range must be 'tv' or 'pc'"):
        ColourTags(range="full")
