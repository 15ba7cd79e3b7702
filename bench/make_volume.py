"""Write a synthetic data product volume for benchmarks and demos.

    python bench/make_volume.py ROOT N [--seed S] [--data-bytes B]

N execution blocks under ROOT, every fifth one holding two sub-products under
<eb>/ska-sdp/<pb>/; the same seed gives the same volume (dpd/synthetic.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dpd.synthetic import write_synthetic_volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("blocks", type=int, help="execution blocks to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-bytes", type=int, default=0, help="payload bytes per listed file")
    args = parser.parse_args()
    if args.blocks < 1:
        parser.error("N must be at least 1")
    started = time.monotonic()
    written = write_synthetic_volume(
        args.root, args.blocks, seed=args.seed, data_bytes=args.data_bytes
    )
    seconds = time.monotonic() - started
    print(f"wrote {written} metadata files for {args.blocks} execution blocks in {args.root}")
    print(f"blocks={args.blocks} metadata_files={written} seconds={seconds:.2f}")


if __name__ == "__main__":
    main()
