"""Pixel size from the instrument's own metadata, files and folders (issue 12, part A).

Files are written in each vendor's layout with tifffile (the vendor's private tag codes
via ``extratags``) and text sidecars, following the formats' public descriptions.
"""

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from semqa.analysis import AnalysisConfig, analyze, load_lots
from semqa.cli import main
from semqa.errors import InputError
from semqa.io.images import list_images, read_image, read_image_bytes, write_image
from semqa.synth.scenes import SynthConfig, render_pair

H, W = 48, 64
CZ_SEM, FEI_SFEG, FEI_HELIOS, TESCAN = 34118, 34680, 34682, 50431


@pytest.fixture
def frame() -> np.ndarray:
    return (np.arange(H * W, dtype=np.uint32).reshape(H, W) * 21).astype(np.uint16)


def zeiss_text(value: str) -> str:
    # SmartSEM's layout: an upper-case parameter id line, then "Label = value unit".
    return "\r\n".join(["0", "AP_WD", "WD = 8.5 mm", "AP_IMAGE_PIXEL_SIZE", f"Image Pixel Size = {value}", "DP_DETECTOR_CHANNEL", "Signal A = SE2", ""])


def write_zeiss(path, frame, value="7.34375 nm"):
    tifffile.imwrite(path, frame, extratags=[(CZ_SEM, "s", 0, zeiss_text(value), True)])
    return path


def fei_text(width_m="1.5625e-08", height_m="1.5625e-08", resolution_x=W) -> str:
    return (
        "[User]\r\nDate=03/14/2024\r\n[Beam]\r\nHV=5000\r\n"
        f"[Scan]\r\nPixelWidth={width_m}\r\nPixelHeight={height_m}\r\nDwelltime=1e-06\r\n"
        f"[Image]\r\nResolutionX={resolution_x}\r\nResolutionY={H}\r\n"
    )


def tescan_text(x="2.5e-08", y="2.5e-08") -> str:
    return f"AccFrames=4\r\nDevice=MIRA3\r\nPixelSizeX={x}\r\nPixelSizeY={y}\r\nHV=10000\r\n"


def test_zeiss_cz_sem_nm(tmp_path, frame):
    mg = read_image(write_zeiss(tmp_path / "z.tif", frame))
    assert mg.pixel_size_um == pytest.approx(7.34375e-3)
    assert mg.pixel_size_source == "tiff:CZ_SEM:ap_image_pixel_size"
    assert mg.pixel_size_note is None


def test_zeiss_micro_sign_in_its_code_page(tmp_path, frame):
    # SmartSEM writes "µm" as the single cp1252 byte 0xB5, not UTF-8.
    text = zeiss_text("0.1953 \xb5m").encode("cp1252")
    tifffile.imwrite(tmp_path / "z.tif", frame, extratags=[(CZ_SEM, "s", 0, text, True)])
    assert read_image(tmp_path / "z.tif").pixel_size_um == pytest.approx(0.1953)


@pytest.mark.parametrize("code, name", [(FEI_HELIOS, "FEI_HELIOS"), (FEI_SFEG, "FEI_SFEG")])
def test_fei_scan_pixel_width_in_metres(tmp_path, frame, code, name):
    tifffile.imwrite(tmp_path / "f.tif", frame, extratags=[(code, "s", 0, fei_text(), True)])
    mg = read_image(tmp_path / "f.tif")
    assert mg.pixel_size_um == pytest.approx(0.015625)
    assert mg.pixel_size_source == f"tiff:{name}:[Scan]PixelWidth"


FEI_XML = 34683  # tifffile: FEI_TITAN


def fei_xml(x="3.90625e-08", y="3.90625e-08", unit=' unit="m"') -> str:
    """Thermo Fisher's XML metadata block as Bio-Formats and pynxtools-em read it."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<Metadata xmlns:nil="http://schemas.fei.com/Metadata/v1/2013/07" '
        'xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        "<Instrument><Manufacturer>Thermo Fisher Scientific</Manufacturer><InstrumentClass>Phenom</InstrumentClass></Instrument>"
        f"<BinaryResult><PixelSize><X{unit}>{x}</X><Y{unit}>{y}</Y></PixelSize>"
        "<ImageSize><Width>64</Width><Height>48</Height></ImageSize></BinaryResult>"
        "</Metadata>"
    )


def test_thermo_fisher_xml_pixel_size_with_its_unit(tmp_path, frame):
    tifffile.imwrite(tmp_path / "x.tif", frame, extratags=[(FEI_XML, "s", 0, fei_xml(), True)])
    mg = read_image(tmp_path / "x.tif")
    assert mg.pixel_size_um == pytest.approx(0.0390625)
    assert mg.pixel_size_source == "tiff:FEI_TITAN:Metadata/BinaryResult/PixelSize/X"
    tifffile.imwrite(tmp_path / "nm.tif", frame, extratags=[(FEI_XML, "s", 0, fei_xml("39.0625", "39.0625", ' unit="nm"'), True)])
    assert read_image(tmp_path / "nm.tif").pixel_size_um == pytest.approx(0.0390625)


@pytest.mark.parametrize(
    "text, message",
    [(fei_xml(unit=""), "has no unit"), (fei_xml(y="7.8e-08"), "square"), (fei_xml(x="true"), "number"), ("<Metadata><Bin", "unreadable XML")],
)
def test_thermo_fisher_xml_bad_values_are_refused(tmp_path, frame, text, message):
    tifffile.imwrite(tmp_path / "x.tif", frame, extratags=[(FEI_XML, "s", 0, text, True)])
    with pytest.raises(InputError, match=message):
        read_image(tmp_path / "x.tif")


def test_fei_non_square_pixels_and_resized_image_are_refused(tmp_path, frame):
    tifffile.imwrite(tmp_path / "ns.tif", frame, extratags=[(FEI_HELIOS, "s", 0, fei_text(height_m="2e-08"), True)])
    with pytest.raises(InputError, match="not square"):
        read_image(tmp_path / "ns.tif")
    tifffile.imwrite(tmp_path / "rs.tif", frame, extratags=[(FEI_HELIOS, "s", 0, fei_text(resolution_x=2 * W), True)])
    with pytest.raises(InputError, match=f"records an image {2 * W} px wide but the file holds {W} px"):
        read_image(tmp_path / "rs.tif")


def test_tescan_tag_after_binary_prefix(tmp_path, frame):
    payload = b"\x01\x00\x00\x10\xff\xd8thumbnail\x00" + tescan_text().encode()
    tifffile.imwrite(tmp_path / "t.tif", frame, extratags=[(TESCAN, "B", len(payload), payload, True)])
    mg = read_image(tmp_path / "t.tif")
    assert mg.pixel_size_um == pytest.approx(0.025)
    assert mg.pixel_size_source == "tiff:TESCAN:PixelSizeX"


@pytest.mark.parametrize("hdr_name", ["t.hdr", "t-tif.hdr"])
def test_tescan_hdr_sidecar(tmp_path, frame, hdr_name):
    tifffile.imwrite(tmp_path / "t.tif", frame)
    (tmp_path / hdr_name).write_text("[MAIN]\n" + tescan_text(x="1e-09", y="1e-09") + "[SEM]\nWD=0.01\n")
    mg = read_image(tmp_path / "t.tif")
    assert mg.pixel_size_um == pytest.approx(1e-3)
    assert mg.pixel_size_source == f"sidecar:{hdr_name}:[MAIN]PixelSizeX"


def test_hdr_of_another_program_is_ignored(tmp_path, frame):
    tifffile.imwrite(tmp_path / "e.tif", frame)
    (tmp_path / "e.hdr").write_text("ENVI\nsamples = 64\nlines = 48\n")
    assert read_image(tmp_path / "e.tif").pixel_size_um is None


JEOL = "$CM_FORMAT JEOL/SEM\n$CM_VERSION 1.0\n$CM_MAG 5000\n$CM_FULL_SIZE {w} {h}\n$$SM_MICRON_BAR {bar}\n$$SM_MICRON_MARKER {marker}\n"


@pytest.mark.parametrize("bar, marker, um", [(160, "5um", 5 / 160), (125, "500nm", 0.004), (80, "1µm", 1 / 80)])
def test_jeol_txt_sidecar(tmp_path, frame, bar, marker, um):
    Image.fromarray(frame).save(tmp_path / "j.tif")
    (tmp_path / "j.txt").write_text(JEOL.format(w=W, h=H, bar=bar, marker=marker), encoding="utf-8")
    mg = read_image(tmp_path / "j.tif")
    assert mg.pixel_size_um == pytest.approx(um)
    assert mg.pixel_size_source == "sidecar:j.txt:$$SM_MICRON_MARKER/$$SM_MICRON_BAR"


def test_jeol_txt_in_the_instrument_code_page(tmp_path, frame):
    Image.fromarray(frame).save(tmp_path / "j.tif")
    (tmp_path / "j.txt").write_bytes(JEOL.format(w=W, h=H, bar=100, marker="1µm").encode("cp1252"))
    assert read_image(tmp_path / "j.tif").pixel_size_um == pytest.approx(0.01)


def test_jeol_full_size_other_than_the_image_is_refused(tmp_path, frame):
    Image.fromarray(frame).save(tmp_path / "j.tif")
    (tmp_path / "j.txt").write_text(JEOL.format(w=1280, h=960, bar=160, marker="5um"))
    with pytest.raises(InputError, match="1280 px wide"):
        read_image(tmp_path / "j.tif")


def test_hitachi_txt_sidecar_in_nm(tmp_path, frame):
    Image.fromarray(frame).save(tmp_path / "h.tif")
    (tmp_path / "h.txt").write_text(
        f"[SemImageFile]\nInstructName=S-4800\nMagnification=5000\nDataSize={W}x{H}\nPixelSize=24.8\n"
        "AcceleratingVoltage=15000 Volt\n"
    )
    mg = read_image(tmp_path / "h.tif")
    assert mg.pixel_size_um == pytest.approx(0.0248)
    assert mg.pixel_size_source == "sidecar:h.txt:[SemImageFile]PixelSize"


def test_unrelated_txt_beside_an_image_is_ignored(tmp_path, frame):
    Image.fromarray(frame).save(tmp_path / "n.png")
    (tmp_path / "n.txt").write_text("sample 12, prepared by A.B.\n")
    assert read_image(tmp_path / "n.png").pixel_size_um is None


@pytest.mark.parametrize("unit, um", [("nm", 0.02), ("micron", 20.0), ("\\u00B5m", 20.0)])
def test_imagej_calibration_units(tmp_path, frame, unit, um):
    ppu = 1 / 20  # 20 units per pixel
    tifffile.imwrite(tmp_path / "ij.tif", frame, imagej=True, resolution=(ppu, ppu), metadata={"unit": unit})
    mg = read_image(tmp_path / "ij.tif")
    assert mg.pixel_size_um == pytest.approx(um)
    assert mg.pixel_size_source == "tiff:ImageJ:unit+XResolution"


@pytest.mark.parametrize("meta, um", [
    ({"PhysicalSizeX": 12.5, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 12.5, "PhysicalSizeYUnit": "nm"}, 0.0125),
    ({"PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25}, 0.25),  # the OME schema's default unit is µm
])
def test_ome_physical_size_with_units(tmp_path, frame, meta, um):
    tifffile.imwrite(tmp_path / "o.ome.tif", frame, ome=True, metadata=meta)
    mg = read_image(tmp_path / "o.ome.tif")
    assert mg.pixel_size_um == pytest.approx(um)
    assert mg.pixel_size_source == "tiff:OME:PhysicalSizeX"


@pytest.mark.parametrize("bad", [True, "1_0", None, [0.1], "0.1", "nan", {"x": 1}])
def test_semqa_sidecar_values_that_are_not_numbers(tmp_path, frame, bad):
    Image.fromarray(frame).save(tmp_path / "s.png")
    (tmp_path / "s.json").write_text(json.dumps({"pixel_size_um": bad}))
    with pytest.raises(InputError, match="expected a") as err:
        read_image(tmp_path / "s.png")
    assert "s.json" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["[SemImageFile]\nPixelSize=1_0\n", "[SemImageFile]\nPixelSize=true\n", "[SemImageFile]\nPixelSize=\n"])
def test_vendor_sidecar_values_that_are_not_numbers(tmp_path, frame, text):
    Image.fromarray(frame).save(tmp_path / "h.tif")
    (tmp_path / "h.txt").write_text(text)
    with pytest.raises(InputError, match="h.txt"):
        read_image(tmp_path / "h.tif")


def test_implausible_pixel_size_refused_unless_forced(tmp_path, frame):
    write_zeiss(tmp_path / "m.tif", frame, "7.34375 m")  # a unit slip: 7 m per pixel
    with pytest.raises(InputError, match="outside the plausible SEM range"):
        read_image(tmp_path / "m.tif")
    assert read_image(tmp_path / "m.tif", force_pixel_size=True).pixel_size_um == pytest.approx(7.34375e6)
    plain = write_image(tmp_path / "p.tif", frame / 65535.0)
    for value in (5e-5, 150.0):
        with pytest.raises(InputError, match="--force-pixel-size"):
            read_image(plain, pixel_size_um=value)
        assert read_image(plain, pixel_size_um=value, force_pixel_size=True).pixel_size_um == value


def test_flag_overrides_the_file_and_says_so(tmp_path, frame):
    path = write_zeiss(tmp_path / "z.tif", frame)
    mg = read_image(path, pixel_size_um=0.01)
    assert (mg.pixel_size_um, mg.pixel_size_source) == (0.01, "flag")
    assert "0.00734375" in mg.pixel_size_note and "tiff:CZ_SEM:ap_image_pixel_size" in mg.pixel_size_note
    assert read_image(path, pixel_size_um=7.34375e-3).pixel_size_note is None  # same value: nothing to note
    # Malformed metadata do not block a value the user gave, but are noted.
    Image.fromarray(frame).save(tmp_path / "s.png")
    (tmp_path / "s.json").write_text('{"pixel_size_um": true}')
    mg = read_image(tmp_path / "s.png", pixel_size_um=0.2)
    assert mg.pixel_size_um == 0.2 and "not used" in mg.pixel_size_note


def test_sources_that_disagree_are_refused(tmp_path, frame):
    # A Zeiss frame that ImageJ calibrated after a 2× downsampling: which is right is unknowable.
    ppu = 1 / 14.6875
    tifffile.imwrite(tmp_path / "d.tif", frame, imagej=True, resolution=(ppu, ppu), metadata={"unit": "nm"},
                     extratags=[(CZ_SEM, "s", 0, zeiss_text("7.34375 nm"), True)])
    with pytest.raises(InputError, match="disagree"):
        read_image(tmp_path / "d.tif")


def test_the_file_wins_over_a_sidecar_and_the_disagreement_is_noted(tmp_path, frame):
    path = write_image(tmp_path / "a.tif", frame / 65535.0, pixel_size_um=0.1)
    (tmp_path / "a.json").write_text('{"pixel_size_um": 9.9}')
    mg = read_image(path)
    assert (mg.pixel_size_um, mg.pixel_size_source) == (0.1, "tiff:ImageDescription:pixel_size_um")
    assert "9.9" in mg.pixel_size_note and "sidecar:a.json:pixel_size_um" in mg.pixel_size_note


def test_sidecars_that_disagree_are_refused(tmp_path, frame):
    Image.fromarray(frame).save(tmp_path / "j.tif")
    (tmp_path / "j.txt").write_text(JEOL.format(w=W, h=H, bar=160, marker="5um"))
    (tmp_path / "j.json").write_text('{"pixel_size_um": 0.5}')
    with pytest.raises(InputError, match="disagree"):
        read_image(tmp_path / "j.tif")


def test_upload_reads_embedded_metadata_and_records_the_form_field(tmp_path, frame):
    data = write_zeiss(tmp_path / "z.tif", frame).read_bytes()
    assert read_image_bytes(data, "z.tif").pixel_size_source == "tiff:CZ_SEM:ap_image_pixel_size"
    mg = read_image_bytes(data, "z.tif", pixel_size_um=0.01, pixel_size_source="form:pixel_size_um")
    assert mg.pixel_size_source == "form:pixel_size_um" and mg.pixel_size_note


def test_multi_page_tiff_refused_thumbnail_skipped(tmp_path, frame):
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([frame, frame[::-1]]))
    with pytest.raises(InputError, match="holds 2 images"):
        read_image(tmp_path / "stack.tif")
    with tifffile.TiffWriter(tmp_path / "thumb.tif") as tw:
        tw.write(frame, extratags=[(CZ_SEM, "s", 0, zeiss_text("7.34375 nm"), True)])
        tw.write(frame[::4, ::4], subfiletype=1)  # a reduced-resolution preview
    mg = read_image(tmp_path / "thumb.tif")
    assert mg.shape == (H, W) and mg.pixel_size_source == "tiff:CZ_SEM:ap_image_pixel_size"


@pytest.mark.parametrize("fmt", ["tif", "png"])
def test_16bit_keeps_its_dynamic_range(tmp_path, fmt):
    levels = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    path = tmp_path / f"d.{fmt}"
    tifffile.imwrite(path, levels) if fmt == "tif" else Image.fromarray(levels).save(path)
    mg = read_image(path)
    assert mg.bit_depth == 16
    assert np.unique(mg.image).size == 65536
    assert mg.image.min() == 0.0 and mg.image.max() == 1.0


def test_hidden_files_and_folders_are_never_images_or_lots(tmp_path, frame):
    lot = tmp_path / "prod" / "lot1"
    lot.mkdir(parents=True)
    for name in ("a.tif", "._a.tif", ".hidden.png"):
        Image.fromarray(frame).save(lot / name)
    (lot / "Thumbs.db").write_bytes(b"\0" * 16)
    (lot / ".DS_Store").write_bytes(b"\0" * 16)
    for hidden in (".ipynb_checkpoints", "__MACOSX"):
        (tmp_path / "prod" / hidden).mkdir()
        Image.fromarray(frame).save(tmp_path / "prod" / hidden / "a.tif")
    assert [p.name for p in list_images(lot)] == ["a.tif"]
    assert list(load_lots(tmp_path / "prod")) == ["lot1"]


@pytest.fixture(scope="module")
def scene():
    config = SynthConfig(size_px=384)
    hr, _, _ = render_pair(config, np.random.default_rng(11))
    return hr, config.pixel_size_um


def test_vendor_files_give_the_same_psd_and_record_their_source(tmp_path, scene):
    """One scene in four layouts: the same sizes in µm, each with the source it was read from."""
    hr, px = scene
    arr = np.clip(np.rint(hr * 65535), 0, 65535).astype(np.uint16)
    native = write_image(tmp_path / "native.tif", hr, pixel_size_um=px, bit_depth=16)
    tifffile.imwrite(tmp_path / "zeiss.tif", arr, extratags=[(CZ_SEM, "s", 0, zeiss_text(f"{px * 1e3!r} nm"), True)])
    tifffile.imwrite(tmp_path / "fei.tif", arr, extratags=[(FEI_HELIOS, "s", 0, fei_text(repr(px * 1e-6), repr(px * 1e-6), arr.shape[1]), True)])
    Image.fromarray(arr).save(tmp_path / "hitachi.tif")
    (tmp_path / "hitachi.txt").write_text(f"[SemImageFile]\nDataSize={arr.shape[1]}x{arr.shape[0]}\nPixelSize={px * 1e3!r}\n")
    config = AnalysisConfig(n_bootstrap=0)
    results = {p.stem: analyze([read_image(p)], config) for p in (native, *(tmp_path / f"{v}.tif" for v in ("zeiss", "fei", "hitachi")))}
    d50 = {k: r.psd.d50_um for k, r in results.items()}
    assert results["native"].psd.n > 10
    assert all(v == pytest.approx(d50["native"], rel=1e-9) for v in d50.values()), d50
    sources = {k: r.images[0].pixel_size_source for k, r in results.items()}
    assert sources == {
        "native": "tiff:ImageDescription:pixel_size_um",
        "zeiss": "tiff:CZ_SEM:ap_image_pixel_size",
        "fei": "tiff:FEI_HELIOS:[Scan]PixelWidth",
        "hitachi": "sidecar:hitachi.txt:[SemImageFile]PixelSize",
    }


def test_cli_analyze_zeiss_without_pixel_size_flag(tmp_path, scene, capsys):
    hr, px = scene
    arr = np.clip(np.rint(hr * 65535), 0, 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "z.tif", arr, extratags=[(CZ_SEM, "s", 0, zeiss_text(f"{px * 1e3!r} nm"), True)])
    out = tmp_path / "r.json"
    assert main(["analyze", str(tmp_path / "z.tif"), "--json", str(out)]) == 0
    image = json.loads(out.read_text())["images"][0]
    assert image["pixel_size_um"] == pytest.approx(px) and image["pixel_size_source"] == "tiff:CZ_SEM:ap_image_pixel_size"
    assert "pixel size from tiff:CZ_SEM:ap_image_pixel_size: 1 image(s)" in capsys.readouterr().out
    assert main(["analyze", str(tmp_path / "z.tif"), "--pixel-size", "0.5", "--json", str(out)]) == 0
    image = json.loads(out.read_text())["images"][0]
    assert image["pixel_size_source"] == "flag" and "tiff:CZ_SEM" in image["pixel_size_note"]
    assert "note: z.tif: pixel size 0.5 µm (flag) overrides" in capsys.readouterr().out
    assert main(["analyze", str(tmp_path / "z.tif"), "--pixel-size", "500"]) == 2
    assert "--force-pixel-size" in capsys.readouterr().err


def _sr(tmp_path, src, out, capsys) -> str:
    # The plan is checked before the model is loaded: a missing model must not be what fails.
    assert main(["super-resolve", str(src), str(out), "--model", str(tmp_path / "no-model")]) == 2
    return capsys.readouterr().err


def test_super_resolve_never_overwrites_or_rereads_inputs(tmp_path, frame, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(frame).save(src / "a.png")
    assert "is the input folder" in _sr(tmp_path, src, src, capsys)
    assert "inside the input folder" in _sr(tmp_path, src, src / "sr", capsys)
    assert "would overwrite the input" in _sr(tmp_path, src / "a.png", src, capsys)
    eight_bit = (frame >> 8).astype(np.uint8)  # BMP and JPEG hold 8 bits
    Image.fromarray(eight_bit).save(src / "x.bmp")
    Image.fromarray(eight_bit).save(src / "x.jpg")
    err = _sr(tmp_path, src, tmp_path / "out", capsys)
    assert "x.bmp" in err and "x.jpg" in err and "both be written" in err
    (src / "x.jpg").unlink()
    tifffile.imwrite(src / "y.tif", frame)
    tifffile.imwrite(src / "y.TIF", frame)
    err = _sr(tmp_path, src, tmp_path / "out", capsys)
    assert "y.TIF" in err and "y.tif" in err and "both be written" in err
    (src / "y.TIF").unlink()
    # With the clashes gone, what fails is the missing model, after the plan passed.
    assert "both be written" not in _sr(tmp_path, src, tmp_path / "out", capsys)
    assert not (tmp_path / "out").exists()
