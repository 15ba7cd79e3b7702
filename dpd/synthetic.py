"""Synthetic data product volumes: the demo's extra products and the benchmark's volume.

Documents look like the real-format fixtures (1-3 KB, the same sections and
YAML 1.1 scalars), spread over dates, access groups, product types and
instruments, with sub-products under `<eb>/ska-sdp/<pb>/` every few blocks.
The same seed gives byte-identical volumes, so benchmark runs compare.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

METADATA_FILE_NAME = "ska-data-product.yaml"
# Every SUBPRODUCT_EVERY-th execution block holds processing-block sub-products
# instead of one top-level product.
SUBPRODUCT_EVERY = 5
ACCESS_GROUPS = [None, None, None, "ska-low-team", "ska-mid-team", "aa05-commissioning"]
PRODUCT_TYPES = [
    ("visibility", "vis-receive", "output.scan-{n}.ms"),
    ("image", "imaging", "image.scan-{n}.fits"),
    ("cube", "spectral-line", "cube.scan-{n}.fits"),
    ("timeseries", "pulsar-timing", "pst/{n}/data.dat"),
    ("pointing", "pointing-offset", "pointing_offsets_scan_{n}.hdf5"),
]
INSTRUMENTS = ["SKA-Low", "SKA-Mid"]
OBSERVERS = ["AIV_person_1", "AIV_person_2", "commissioning_scientist", "operator_on_shift"]
FIRST_DAY = dt.date(2019, 1, 1)


def write_synthetic_volume(
    root: Path, blocks: int, *, seed: int = 0, data_bytes: int = 0, prefix: str = "syn"
) -> int:
    """Write `blocks` execution blocks under root; return the metadata files written.

    With data_bytes > 0 every file a document lists is written with that many
    bytes, so downloads have something to stream.
    """
    rng = random.Random(seed)
    written = 0
    for index in range(blocks):
        day = FIRST_DAY + dt.timedelta(days=rng.randrange(2500))
        execution_block = f"eb-{prefix}{index % 97:02d}-{day:%Y%m%d}-{index:05d}"
        if index % SUBPRODUCT_EVERY == SUBPRODUCT_EVERY - 1:
            for kind in ("vr", "po"):
                pb = f"pb-{prefix}{kind}-{day:%Y%m%d}-{index:05d}"
                folder = root / execution_block / "ska-sdp" / pb
                written += _write_product(folder, rng, execution_block, pb, data_bytes)
        else:
            pb = f"pb-{prefix}-{day:%Y%m%d}-{index:05d}"
            written += _write_product(root / execution_block, rng, execution_block, pb, data_bytes)
    return written


def _write_product(
    folder: Path, rng: random.Random, execution_block: str, pb: str, data_bytes: int
) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    product_type, script, pattern = rng.choice(PRODUCT_TYPES)
    paths = [pattern.format(n=n) for n in range(1, rng.randint(3, 9))]
    (folder / METADATA_FILE_NAME).write_text(
        render_document(rng, execution_block, pb, product_type, script, paths)
    )
    if data_bytes > 0:
        payload = b"\0" * data_bytes
        for path in paths:
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(payload)
    return 1


def render_document(
    rng: random.Random,
    execution_block: str,
    pb: str,
    product_type: str,
    script: str,
    paths: list[str],
) -> str:
    """One metadata document as YAML text, in the fixtures' style."""
    access_group = rng.choice(ACCESS_GROUPS)
    context = [
        f"  observer: {rng.choice(OBSERVERS)}",
        f'  intent: "Synthetic {product_type} run {rng.randrange(1000)}"',
        '  notes: "Generated for demos and benchmarks; values are plausible, not real"',
    ]
    if access_group:
        context.append(f'  access_group: "{access_group}"')
    files = []
    for path in paths:
        files.append(
            f"  - crc: {rng.getrandbits(32):08x}\n"
            f"    description: {product_type} product part {path}\n"
            f"    path: {path}\n"
            f"    size: {rng.randrange(1, 10**9)}\n"
            f"    status: {rng.choice(['done', 'done', 'working', 'failure'])}"
        )
    t_min = 60000 + rng.random() * 1000
    return "\n".join(
        [
            "interface: http://schema.skao.int/ska-data-product-meta/0.1",
            f"execution_block: {execution_block}",
            "context: # Free-form data provided by OET.",
            *context,
            "config: # Configuration of generating software",
            f"  processing_block: {pb}",
            f"  processing_script: {script}",
            f"  image: artefact.skao.int/ska-sdp-script-{script}",
            f"  version: {rng.randint(0, 5)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
            f"  commit: {rng.getrandbits(160):040x}",
            f"  cmdline: -dump /product/{execution_block}/ska-sdp/{pb}/{paths[0]}",
            "files:",
            *files,
            "obscore:",
            "  access_estsize: null",
            "  access_format: application/unknown",
            "  calib_level: 0",
            f"  dataproduct_type: {product_type}",
            "  facility_name: SKA-Observatory",
            f"  instrument_name: {rng.choice(INSTRUMENTS)}",
            f"  obs_collection: {rng.choice(['Unknown', 'Commissioning', 'Science'])}",
            f"  obs_id: {execution_block}",
            f"  s_dec: {rng.uniform(-90, 30):.4f}",
            f"  s_ra: {rng.uniform(0, 360):.4f}",
            f"  t_exptime: {rng.randrange(10, 36000)}",
            f"  t_min: {t_min:.6f}",
            f"  t_max: {t_min + rng.random():.6f}",
            f"  target_name: {rng.choice(['PKS1934-638', '3C286', 'Vela', 'None'])}",
            "",
        ]
    )
