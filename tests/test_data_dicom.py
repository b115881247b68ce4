"""data.dicom and data.image_conversion on real radiographs: polarity, the LUT chain, encodings, rejections."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import pydicom_testdata
from data.dicom import UnusableImageError, read_radiograph
from data.image_conversion import convert_image, fit_square, pixel_content_hash, to_bit_depth

pydicom = pytest.importorskip("pydicom")
CHEST = "CR-MONO1-10-chest.dcm"


def region(image: np.ndarray, rows: tuple[float, float], cols: tuple[float, float]) -> float:
    height, width = image.shape
    return float(image[int(rows[0] * height):int(rows[1] * height), int(cols[0] * width):int(cols[1] * width)].mean())


def chest_polarity(image: np.ndarray) -> float:
    """Mediastinum and spine (centre column) minus both lung fields: positive when bone is bright."""
    centre = region(image, (0.2, 0.6), (0.4, 0.6))
    lungs = (region(image, (0.2, 0.6), (0.2, 0.4)) + region(image, (0.2, 0.6), (0.6, 0.8))) / 2
    return centre - lungs


def band_polarity(bright_rows, dark_rows):
    return lambda image: region(image, bright_rows, (0, 1)) - region(image, dark_rows, (0, 1))


# file, modality, photometric, rows x cols, VOI expected, polarity measure (> 0.1 when air dark / bone bright)
REAL_FILES = [
    ("CR-MONO1-10-chest.dcm", "CR", "MONOCHROME1", (440, 440), "window", chest_polarity),
    ("siim_chest_pa_jpeg_baseline.dcm", "CR", "MONOCHROME2", (1024, 1024), "percentile", chest_polarity),
    # Veterinary lateral thorax: spine along the top, air under the sternum at the bottom.
    ("highdicom_dx_image.dcm", "DX", "MONOCHROME1", (169, 211), "window", band_polarity((0.2, 0.4), (0.8, 1.0))),
    # Dental panoramic: teeth across the middle, unexposed air above.
    ("CR-ModalitySequenceLUT.dcm", "CR", "MONOCHROME1", (1576, 1976), "percentile", band_polarity((0.4, 0.6), (0.0, 0.3))),
]


@pytest.mark.parametrize("name, modality, photometric, shape, voi, polarity", REAL_FILES, ids=[row[0] for row in REAL_FILES])
def test_real_radiographs_convert_with_air_dark_and_bone_bright(shared_data, name, modality, photometric, shape, voi, polarity):
    image, facts = read_radiograph(shared_data / "dicom" / name)
    assert image.dtype == np.float32 and image.shape == shape
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.max() - image.min() > 0.5
    assert (facts["modality"], facts["photometric"], facts["voi"]) == (modality, photometric, voi)
    assert facts["inverted"] == (photometric == "MONOCHROME1")
    assert polarity(image) > 0.1


def test_rg1_chest_same_image_from_uncompressed_and_jpeg2000_lossless_nearly_from_lossy():
    uncompressed, facts = read_radiograph(pydicom_testdata("RG1_UNCR.dcm"))
    lossless, _ = read_radiograph(pydicom_testdata("RG1_J2KR.dcm"))
    lossy, _ = read_radiograph(pydicom_testdata("RG1_J2KI.dcm"))
    assert uncompressed.shape == (1955, 1841) and facts["photometric"] == "MONOCHROME1"
    assert chest_polarity(uncompressed) > 0.1
    np.testing.assert_array_equal(uncompressed, lossless)
    assert not np.array_equal(uncompressed, lossy)
    assert float(np.abs(uncompressed - lossy).mean()) < 0.005
    small = [convert_image(pydicom_testdata(name), image_size=256) for name in ("RG1_UNCR.dcm", "RG1_J2KI.dcm")]
    assert np.abs(small[0].astype(int) - small[1].astype(int)).max() <= 3


def test_old_style_file_without_preamble_or_file_meta_is_read(shared_data):
    raw = (shared_data / "dicom" / CHEST).read_bytes()
    assert raw[128:132] != b"DICM"  # truly the old style: no preamble, no file meta
    _, facts = read_radiograph(shared_data / "dicom" / CHEST)
    assert facts["transfer_syntax"] == "1.2.840.10008.1.2"  # implicit VR little endian, set by the reader


@pytest.fixture(scope="module")
def chest_encodings(tmp_path_factory, shared_data):
    """The real 10-bit chest CR re-encoded losslessly with every encoder installed here."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import JPEG2000Lossless, ExplicitVRLittleEndian, RLELossless

    folder = tmp_path_factory.mktemp("encodings")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = pydicom.dcmread(shared_data / "dicom" / CHEST, force=True)
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    explicit = folder / "explicit.dcm"
    dataset.save_as(explicit, enforce_file_format=True)
    paths = {"explicit": explicit}
    for name, syntax in (("rle_pydicom", RLELossless), ("j2k_lossless_pydicom", JPEG2000Lossless)):
        encoded = pydicom.dcmread(explicit)
        encoded.compress(syntax)
        encoded.save_as(folder / f"{name}.dcm")
        paths[name] = folder / f"{name}.dcm"
    for name, syntax_name in (("jpeg_lossless_p14", "JPEGLosslessProcess14"),
                              ("jpeg_lossless_sv1", "JPEGLosslessProcess14_1"),
                              ("jpeg_ls_lossless", "JPEGLSLossless"),
                              ("jpeg_extended_12bit", "JPEGExtendedProcess2_4")):
        paths[name] = transcode_with_gdcm(explicit, folder / f"{name}.dcm", syntax_name)
    return paths


@pytest.mark.parametrize("encoding, syntax", [
    ("rle_pydicom", "1.2.840.10008.1.2.5"), ("j2k_lossless_pydicom", "1.2.840.10008.1.2.4.90"),
    ("jpeg_lossless_p14", "1.2.840.10008.1.2.4.57"), ("jpeg_lossless_sv1", "1.2.840.10008.1.2.4.70"),
    ("jpeg_ls_lossless", "1.2.840.10008.1.2.4.80"),
])
def test_lossless_encodings_of_a_real_chest_decode_to_the_same_image(shared_data, chest_encodings, encoding, syntax):
    reference, _ = read_radiograph(shared_data / "dicom" / CHEST)
    image, facts = read_radiograph(chest_encodings[encoding])
    assert facts["transfer_syntax"] == syntax
    np.testing.assert_array_equal(image, reference)


def transcode_with_gdcm(source: Path, target: Path, syntax_name: str) -> Path:
    """Re-encode a DICOM file with python-gdcm (it writes JPEG, JPEG-LS and RLE that pydicom cannot)."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax_name)))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(target))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    return target


@pytest.mark.parametrize("syntax_name, syntax", [
    ("JPEGBaselineProcess1", "1.2.840.10008.1.2.4.50"), ("JPEGExtendedProcess2_4", "1.2.840.10008.1.2.4.51"),
    ("JPEGLSNearLossless", "1.2.840.10008.1.2.4.81"),
])
def test_lossy_encodings_of_a_real_8bit_radiograph_decode_nearly_the_same(shared_data, tmp_path, syntax_name, syntax):
    source = shared_data / "dicom" / "highdicom_dx_image.dcm"
    reference, _ = read_radiograph(source)
    image, facts = read_radiograph(transcode_with_gdcm(source, tmp_path / "lossy.dcm", syntax_name))
    assert facts["transfer_syntax"] == syntax
    assert float(np.abs(image - reference).mean()) < 0.005 and float(np.abs(image - reference).max()) < 0.05


def test_twelve_bit_jpeg_extended_is_rejected_with_the_extra_to_install(chest_encodings):
    try:
        import libjpeg  # noqa: F401  (the GPL decoder; when installed the file decodes)
        pytest.skip("pylibjpeg-libjpeg is installed")
    except ImportError:
        pass
    with pytest.raises(UnusableImageError, match=r"\[gpl-codecs\]"):
        read_radiograph(chest_encodings["jpeg_extended_12bit"])


def test_lossless_encodings_hash_the_same_pixel_content(shared_data, chest_encodings):
    hashes = set()
    for name in ("explicit", "rle_pydicom", "jpeg_ls_lossless"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hashes.add(pixel_content_hash(pydicom.dcmread(chest_encodings[name]).pixel_array))
    assert len(hashes) == 1
    assert pixel_content_hash(np.zeros((4, 4), np.uint8)) == pixel_content_hash(np.zeros((4, 4), np.uint16))
    assert pixel_content_hash(np.zeros((4, 4), np.uint8)) != pixel_content_hash(np.zeros((2, 8), np.uint8))


def dx_dataset(shared_data):
    return pydicom.dcmread(shared_data / "dicom" / "highdicom_dx_image.dcm")


def read_edited(dataset, tmp_path, name="edited.dcm"):
    dataset.save_as(tmp_path / name)
    return read_radiograph(tmp_path / name)


def test_modality_lut_is_applied_before_the_window(shared_data, tmp_path):
    reference, _ = read_radiograph(shared_data / "dicom" / "highdicom_dx_image.dcm")
    dataset = dx_dataset(shared_data)
    # Stored values x2 - 100 and the window moved with them: the same picture if and only if the
    # rescale is applied before windowing.
    dataset.RescaleSlope, dataset.RescaleIntercept = 2, -100
    dataset.WindowCenter, dataset.WindowWidth = 2 * 128.0 - 100, 2 * 256.0
    image, _ = read_edited(dataset, tmp_path)
    assert np.abs(image - reference).max() < 0.005


def test_first_of_several_windows_is_used(shared_data, tmp_path):
    dataset = dx_dataset(shared_data)
    dataset.WindowCenter, dataset.WindowWidth = [100.0, 10.0], [80.0, 5.0]
    several, _ = read_edited(dataset, tmp_path, "several.dcm")
    dataset.WindowCenter, dataset.WindowWidth = 100.0, 80.0
    first, _ = read_edited(dataset, tmp_path, "first.dcm")
    np.testing.assert_array_equal(several, first)


@pytest.mark.parametrize("function, expected", [
    ("LINEAR_EXACT", lambda x: np.clip((x - 100.0) / 80.0 + 0.5, 0, 1)),
    ("SIGMOID", lambda x: 1.0 / (1.0 + np.exp(-4.0 * (x - 100.0) / 80.0))),
])
def test_voi_lut_functions(shared_data, tmp_path, function, expected):
    dataset = dx_dataset(shared_data)
    dataset.WindowCenter, dataset.WindowWidth, dataset.VOILUTFunction = 100.0, 80.0, function
    image, _ = read_edited(dataset, tmp_path)
    np.testing.assert_allclose(image, 1.0 - expected(dataset.pixel_array.astype(np.float64)), atol=1e-5)


def test_voi_lut_sequence_wins_over_the_window(shared_data, tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    dataset = dx_dataset(shared_data)
    lut = Dataset()
    lut.add_new(0x00283002, "US", [256, 0, 8])  # LUTDescriptor: 256 entries from stored value 0, 8 bits
    lut.add_new(0x00283006, "US", [0] * 128 + [255] * 128)  # LUTData: a threshold no window can give
    dataset.VOILUTSequence = Sequence([lut])
    image, facts = read_edited(dataset, tmp_path)
    assert facts["voi"] == "voi_lut_sequence"
    assert set(np.unique(image)) == {0.0, 1.0}
    stored = dataset.pixel_array
    np.testing.assert_array_equal(image, (stored < 128).astype(np.float32))  # MONOCHROME1: inverted once


def test_monochrome1_is_inverted_exactly_once_with_or_without_presentation_lut_inverse(shared_data, tmp_path):
    reference, facts = read_radiograph(shared_data / "dicom" / "highdicom_dx_image.dcm")
    dataset = dx_dataset(shared_data)
    assert facts["photometric"] == "MONOCHROME1" and dataset.PresentationLUTShape == "INVERSE"
    del dataset.PresentationLUTShape
    without_shape, _ = read_edited(dataset, tmp_path, "no_shape.dcm")
    np.testing.assert_array_equal(without_shape, reference)
    dataset.PhotometricInterpretation = "MONOCHROME2"
    monochrome2, _ = read_edited(dataset, tmp_path, "mono2.dcm")
    np.testing.assert_allclose(monochrome2, 1.0 - reference, atol=1e-6)


def test_percentile_fallback_when_no_voi_is_given(shared_data):
    image, facts = read_radiograph(shared_data / "dicom" / "siim_chest_pa_jpeg_baseline.dcm")
    assert facts["voi"] == "percentile"
    assert np.mean(image == 0.0) < 0.02 and np.mean(image == 1.0) < 0.02  # ~0.5 % clipped at each end


def test_unusable_files_are_refused_with_a_reason(shared_data, tmp_path):
    no_pixels = dx_dataset(shared_data)
    del no_pixels.PixelData
    no_pixels.save_as(tmp_path / "no_pixels.dcm")
    raw = (shared_data / "dicom" / "highdicom_dx_image.dcm").read_bytes()
    (tmp_path / "truncated.dcm").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "notes.dcm").write_text("not a DICOM file at all\n")
    cases = {
        tmp_path / "no_pixels.dcm": "no pixel data",
        tmp_path / "truncated.dcm": "truncated",
        tmp_path / "notes.dcm": "DICOM",
        pydicom_testdata("SC_rgb.dcm"): "colour image",
        pydicom_testdata("emri_small.dcm"): "multi-frame",
    }
    for path, reason in cases.items():
        with pytest.raises(UnusableImageError, match=reason) as caught:
            read_radiograph(path)
        assert str(path) in str(caught.value)


def test_fit_square_pads_the_short_side_with_air_and_keeps_the_aspect():
    tall = np.ones((200, 100), dtype=np.float32)
    square = fit_square(tall, 64)
    assert square.shape == (64, 64)
    assert square[:, :16].max() == 0.0 and square[:, -16:].max() == 0.0  # 16 px of padding each side
    assert square[:, 17:47].min() > 0.99  # the image itself, resized to 64 x 32
    assert to_bit_depth(square, 16).dtype == np.uint16 and to_bit_depth(square, 16).max() == 65535


def test_convert_image_reads_dicom_and_png_alike(shared_data, tmp_path):
    from PIL import Image

    eight = convert_image(shared_data / "dicom" / CHEST, image_size=128)
    sixteen = convert_image(shared_data / "dicom" / CHEST, image_size=128, bit_depth=16)
    assert eight.shape == (128, 128) and eight.dtype == np.uint8 and sixteen.dtype == np.uint16
    assert np.abs(sixteen / 257.0 - eight).max() <= 1.0
    Image.fromarray(eight).save(tmp_path / "chest.png")
    np.testing.assert_array_equal(convert_image(tmp_path / "chest.png", image_size=128), eight)
    Image.fromarray(sixteen).save(tmp_path / "chest16.png")
    np.testing.assert_array_equal(convert_image(tmp_path / "chest16.png", image_size=128, bit_depth=16), sixteen)
    rgba = np.stack([eight] * 3 + [np.full_like(eight, 255)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "chest_rgba.png")  # NIH ships a few of these
    np.testing.assert_array_equal(convert_image(tmp_path / "chest_rgba.png", image_size=128), eight)
    rgba[..., 0] = 0
    Image.fromarray(rgba).save(tmp_path / "colour.png")
    with pytest.raises(UnusableImageError, match="colour"):
        convert_image(tmp_path / "colour.png", image_size=128)
