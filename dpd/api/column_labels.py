"""Column labels and tooltips (GET /{lng}/humanreadable, reference 2.6) and the
legacy layout (GET /layout, 2.7). English for every language code: the
dashboard shows the raw field name for any key missing here."""

from __future__ import annotations

from typing import Any

LABELS = {
    "execution_block": "Execution Block",
    "date_created": "Date Created",
    "dataproduct_file": "Data Product File",
    "metadata_file": "Metadata File",
    "metadata_store_name": "Metadata Store",
    "uid": "UID",
    "id": "ID",
    "interface": "Interface",
    "config.processing_block": "Processing Block",
    "config.processing_script": "Processing script",
    "config.image": "Image",
    "config.version": "Version",
    "config.commit": "Commit",
    "config.cmdline": "Command line",
    "context.observer": "Observer",
    "context.intent": "Intent",
    "context.notes": "Notes",
    "context.access_group": "Access Group",
    "files": "Files",
    "size": "File size",
    "status": "Status",
    "annotation": "Annotation",
    "obscore.dataproduct_type": "Data Product Type",
    "obscore.calib_level": "Calibration Level",
    "obscore.obs_collection": "Observation Collection",
    "obscore.obs_id": "Observation ID",
    "obscore.access_format": "Access Format",
    "obscore.target_name": "Target Name",
    "obscore.s_ra": "RA (deg)",
    "obscore.s_dec": "Dec (deg)",
    "obscore.t_min": "Start Time (MJD)",
    "obscore.t_max": "End Time (MJD)",
    "obscore.t_exptime": "Exposure Time (s)",
    "obscore.facility_name": "Facility",
    "obscore.instrument_name": "Instrument",
    "obscore.pol_xel": "Polarisation Samples",
    "obscore.pol_states": "Polarisation States",
    "obscore.em_min": "Min Wavelength (m)",
    "obscore.em_max": "Max Wavelength (m)",
}
TOOLTIPS = {
    "execution_block": "Unique identifier for the execution block that produced this data product.",
    "date_created": "Date the execution block ran, taken from its identifier.",
    "dataproduct_file": "Relative path to the primary data product file within the persistent "
    "storage volume.",
    "metadata_file": "Relative path to the product's metadata file within the persistent "
    "storage volume.",
    "metadata_store_name": "The store the product is catalogued in.",
    "uid": "Stable identifier of the data product.",
    "config.processing_block": "Processing block that produced the product.",
    "config.processing_script": "Processing script that produced the product.",
    "context.observer": "Who ran the observation.",
    "context.intent": "What the observation was for.",
    "context.notes": "Free-text notes about the observation.",
    "context.access_group": "Only members of this group can see the product.",
}
LAYOUT = [
    {"name": "execution_block", "width": 250},
    {"name": "date_created", "width": 150},
    {"name": "observer", "width": 150},
    {"name": "processing_block", "width": 250},
    {"name": "Intent", "width": 300},
    {"name": "notes", "width": 500},
    {"name": "file_size", "width": 80},
    {"name": "status", "width": 80},
]


def labels(lng: str) -> dict[str, Any]:
    """The same English labels for every language code (always 200, 2.6 [rec])."""
    return {**LABELS, "_tooltip": dict(TOOLTIPS)}
