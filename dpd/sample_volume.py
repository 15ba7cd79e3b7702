"""Build the bundled sample volume from the real-format fixtures.

The fixture metadata files (sample_data/ska-examples, copied from the upstream
test volume) are laid out as on the upstream volume, with the small payload
files that reference section 7 lists, so downloads and the grid show real
content on a fresh clone. The declared 2 GB file of eb-largefiletest is left
absent, as upstream.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings

from dpd.synthetic import write_synthetic_volume

FIXTURES = settings.BASE_DIR / "sample_data" / "ska-examples"
TABLE_INFO = (
    "Type = Measurement Set\nSubType = \n\n"
    "This is a MeasurementSet Table holding measurements from a Telescope\n"
)
MS_SUBTABLES = ("ANTENNA", "FIELD", "POLARIZATION", "SPECTRAL_WINDOW")

_TEST_FILES_1_3 = {
    f"ska-sub-system/scan_id_1/pb_id_1/TestDataFile{n}.txt": f"This is test file {n}"
    for n in (1, 2, 3)
}
PAYLOADS: dict[str, dict[str, str]] = {
    "eb-m001-20221212-12345": _TEST_FILES_1_3,
    "eb-m003-20191130-12345": _TEST_FILES_1_3,
    "eb-m004-20191031-12345": _TEST_FILES_1_3,
    "eb-m005-20231031-12345": _TEST_FILES_1_3,
    "eb-test-20200325-00001": _TEST_FILES_1_3,
    "eb-test-20230214-07904": _TEST_FILES_1_3,
    "eb-m002-20221212-12345": {
        f"ska-sub-system/scan_id_2/pb_id_2/TestDataFile{n}.txt": f"This is test file {n}"
        for n in (4, 5, 6)
    },
    "eb-m001-20230921-245": {
        "pst-low/245/data/0.dat": "",
        "pst-low/245/weights/0.dat": "",
        "pst-low/245/observation.log": "A dummy log file for this observation",
    },
    "eb-none-19700101-00003": {"note.txt": "An empty metadata file beside a note.\n"},
    "eb-notebook-20240201-54576/ska-sdp/pb-notebookpo-20240201-54576": {
        "eb-notebook-20240201-54576_pointing_offsets.txt": "# pointing offsets\n",
        "eb-notebook-20240201-54576_pointing_offsets_scans_1-5.hdf5": "\x89HDF\r\n",
    },
    "eb-notebook-20240320-83046/pb-notebookvr-20240320-83046": {
        f"output.scan-{n}.ms/table.info": TABLE_INFO for n in (1, 3, 5)
    },
    "eb-orcatest-20240814-94773/scan1-5": {"pointing_offsets.txt": "# pointing offsets\n"},
    "eb-test-20230401-12345": {"output.scan-1.ms": "", "output.scan-2.ms": ""},
    "eb-test-20240513-47584/pb-testrealtime-20240513-47584": {
        "output.scan-1.ms/table.info": TABLE_INFO
    },
    "eb-notebook-20240201-54576/ska-sdp/pb-notebookvr-20240201-54576": {
        f"output.scan-{n}.ms/{table}": content
        for n in range(1, 7)
        for table, content in [("table.info", TABLE_INFO), ("table.dat", "synthetic table\n")]
        + [(f"{sub}/table.info", TABLE_INFO) for sub in MS_SUBTABLES]
    },
}


# Synthetic blocks go under their own folder so they never mix with the fixtures.
SYNTHETIC_FOLDER = "synthetic"


def build_sample_volume(dest: Path, synthetic_blocks: int = 0) -> int:
    """Copy every fixture metadata file and its payload under dest; return the
    number of metadata files written. Existing files are overwritten.

    With synthetic_blocks, also write that many generated execution blocks
    under dest/synthetic/ (dpd/synthetic.py), so the demo has a few hundred
    products to page, filter and search through. Tests use the fixtures alone.
    """
    dest.mkdir(parents=True, exist_ok=True)
    written = 0
    for source in sorted(FIXTURES.rglob(settings.METADATA_FILE_NAME)):
        folder = source.parent.relative_to(FIXTURES)
        (dest / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest / folder / source.name)
        written += 1
    for folder, files in PAYLOADS.items():
        for name, content in files.items():
            path = dest / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    if synthetic_blocks:
        written += write_synthetic_volume(dest / SYNTHETIC_FOLDER, synthetic_blocks, data_bytes=64)
    return written
