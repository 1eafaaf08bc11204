"""FitSNAP's tantalum neural-network example, run by forcefit from FitSNAP's own input file.

Units: Angstrom, eV, eV/Angstrom (FitSNAP's stresses in bar are converted by the reader).

``Ta-example.in`` (next to this script) is FitSNAP's Ta_PyTorch_NN input: 12 groups of DFT
configurations split 70/30, global energy weight 1e-2 and force weight 1, layers
``num_desc 64 64 1``, batch 4, a ZBL reference potential (4.0-4.8 A) under the network. forcefit
translates it (``[BISPECTRUM]`` is replaced by forcefit's Behler descriptors, with a warning),
fits, and writes FitSNAP's files: the metrics table ``Ta_metrics.dat`` (Group Train/Test
Property Count MAE RMSE), ``loss_vs_epochs.dat``, ``peratom.dat``, ``perconfig.dat``, the
predictions dump and the model ``Ta_Pytorch.pt``. Then, as FitSNAP's "calculate errors on a
test set", ``forcefit eval`` recomputes the errors of the saved model on the Displaced_BCC group.

FitSNAP's figures for this example on a 2-core machine (from the data README): test energy MAE
0.115 eV/atom and test force MAE 0.076 eV/A after about 60 s (100 epochs).

Run: ``python examples/ta_fitsnap/run.py [--max-time 60] [--out ta_output]``; needs
``../shared/data/ta_fitsnap`` next to the checkout (``dataPath`` in the input file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1].parent / "shared" / "data" / "ta_fitsnap"
FITSNAP_TEST_ENERGY_MAE, FITSNAP_TEST_FORCE_MAE = 0.115, 0.076


def metric(path: Path, group: str, subset: str, prop: str) -> tuple[int, float, float]:
    """(Count, MAE, RMSE) of one row of a metrics table."""
    for line in path.read_text().splitlines()[1:]:
        parts = line.split()
        if parts[:3] == [group, subset, prop]:
            return int(parts[3]), float(parts[4]), float(parts[5])
    raise KeyError(f"{path}: no row {group} {subset} {prop}")


def main(argv=None) -> dict:
    from forcefit import cli

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-time", type=float, default=60.0,
                        help="seconds of training (60, FitSNAP's time for this example)")
    parser.add_argument("--epochs", type=int, default=None, help="override num_epochs")
    parser.add_argument("--out", default="ta_output", help="output folder (ta_output)")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        raise SystemExit(f"the Ta data is not at {DATA}: this example needs the project's "
                         "shared data next to the checkout")
    out = Path(args.out).resolve()
    cmd = ["fit", str(HERE / "Ta-example.in"), "-o", str(out), "--max-time",
           str(args.max_time), "--threads", "2", "--quiet"]
    if args.epochs is not None:
        cmd += ["--epochs", str(args.epochs)]
    if cli.main(cmd) != 0:
        raise SystemExit("forcefit fit failed")
    table = out / "Ta_metrics.dat"
    summary = {
        "test_energy_mae": metric(table, "*ALL", "Test", "Energy")[1],
        "test_force_mae": metric(table, "*ALL", "Test", "Force")[1],
        "test_force_rmse": metric(table, "*ALL", "Test", "Force")[2],
        "epochs": len((out / "loss_vs_epochs.dat").read_text().splitlines()) - 1,
    }
    print((out / "Ta_metrics.dat").read_text().rstrip())
    print(f"Ta NN after {summary['epochs']} epochs ({args.max_time:.0f} s limit): test energy "
          f"MAE {summary['test_energy_mae']:.4f} eV/atom (FitSNAP {FITSNAP_TEST_ENERGY_MAE}), "
          f"test force MAE {summary['test_force_mae']:.4f} eV/A (FitSNAP "
          f"{FITSNAP_TEST_FORCE_MAE})")
    # FitSNAP's "calculate errors on a test set": the saved model on one group's folder
    ev = out / "eval_Displaced_BCC"
    if cli.main(["eval", str(out / "Ta_Pytorch.pt"), str(DATA / "Displaced_BCC"), "-o",
                 str(ev), "--quiet"]) != 0:
        raise SystemExit("forcefit eval failed")
    summary["eval_force_mae"] = metric(ev / "metrics.dat", "*ALL", "Test", "Force")[1]
    print(f"forcefit eval on Displaced_BCC: force MAE {summary['eval_force_mae']:.4f} eV/A")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
