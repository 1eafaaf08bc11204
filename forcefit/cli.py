"""The ``forcefit`` command line: fit, eval, describe, relax, md, demo, convert.

Units on the command line are forcefit's: Angstrom, eV, eV/Angstrom, eV/Angstrom^3 (ASE sign);
MD takes its time step in fs and temperature in K; relaxations ``--fmax`` in eV/Angstrom.

Every command writes into an output folder a log file (``forcefit.log``) with what it printed;
``--quiet`` keeps the terminal silent except for errors. Known user errors (a bad config, an
unreadable data file, a missing model) end with one ``forcefit: error: ...`` line and exit
status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from pathlib import Path

__all__ = ["build_parser", "main"]

from .atomic import atomic_path, atomic_write_text
from .config import build_descriptor_set, build_fit_settings

log = logging.getLogger("forcefit.cli")

EXAMPLES = {
    "fit": """examples:
  forcefit fit fit.toml                      # a forcefit TOML config
  forcefit fit Ta-example.in                 # a FitSNAP input file, translated
  forcefit fit fit.toml --epochs 10 -o run1  # override epochs and the output folder
  forcefit fit fit.toml --resume             # continue from the output folder's checkpoint""",
    "eval": """examples:
  forcefit eval run1/model.pt test.extxyz              # metrics, peratom.dat, perconfig.dat, plots
  forcefit eval run1/model.pt ta_fitsnap/ -o ta_eval   # a FitSNAP folder of group folders""",
    "describe": """examples:
  forcefit describe fit.toml                 # descriptors of the config's data -> descriptors.npz,
                                             # per-feature statistics, histograms, radial curves""",
    "relax": """examples:
  forcefit relax run1/model.pt POSCAR --fmax 0.01
  forcefit relax run1/model.pt cell.extxyz --cell -o relaxed.extxyz""",
    "md": """examples:
  forcefit md run1/model.pt cu.extxyz --temperature 300 --steps 1000 --timestep 2
  forcefit md run1/model.pt cu.extxyz --ensemble langevin --temperature 600""",
    "demo": """examples:
  forcefit demo                              # ~100 Cu EMT configurations, fit, metrics, plots
  forcefit demo --quick                      # a 1-minute version""",
    "convert": """examples:
  forcefit convert Ta-example.in -o ta.toml  # FitSNAP input -> forcefit TOML config""",
}


class UserError(Exception):
    """An error the user can fix; printed as one line without a traceback."""


# --------------------------------------------------------------------------- logging


class _TqdmHandler(logging.Handler):
    """Console handler that does not tear tqdm progress bars; writes to the stdout of the
    moment it was made (not to a later redirection)."""

    def __init__(self):
        super().__init__()
        self.stream = sys.stdout

    def emit(self, record):
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


@contextlib.contextmanager
def _logging(folder: Path | None, quiet: bool, log_name: str = "forcefit.log"):
    """Console (unless quiet) and ``folder/log_name`` handlers on the ``forcefit`` logger."""
    root = logging.getLogger("forcefit")
    root.setLevel(logging.INFO)
    root.propagate = False
    handlers: list[logging.Handler] = []
    console = _TqdmHandler()
    console.setLevel(logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    handlers.append(console)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(folder / log_name, mode="a", encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handlers.append(fh)
    for h in handlers:
        root.addHandler(h)
    logging.captureWarnings(True)
    warn_logger = logging.getLogger("py.warnings")
    for h in handlers:
        warn_logger.addHandler(h)
    try:
        yield
    finally:
        for h in handlers:
            root.removeHandler(h)
            warn_logger.removeHandler(h)
            h.close()
        logging.captureWarnings(False)


def _progress(quiet: bool) -> bool:
    """Progress bars on a terminal unless ``--quiet``; ``FORCEFIT_PROGRESS=1`` (or ``0``) in the
    environment forces them on (off) when the output is not a terminal."""
    if quiet:
        return False
    forced = os.environ.get("FORCEFIT_PROGRESS")
    if forced is not None:
        return forced != "0"
    return sys.stderr.isatty()


def _write_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically (see :mod:`forcefit.atomic`)."""
    return atomic_write_text(path, text)


# --------------------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing but errors (the log file still gets everything)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``forcefit`` command (every command shows an example)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="forcefit", formatter_class=fmt,
        description="Fit interatomic force fields and use them.",
        epilog="examples:\n  forcefit demo\n  forcefit fit fit.toml\n"
               "  forcefit eval forcefit_output/model.pt data.extxyz\n"
               "run 'forcefit COMMAND --help' for the options and an example of each command")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"forcefit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("fit", help="fit a potential from a TOML config or a FitSNAP .in file",
                       description="Fit a potential; writes the model, metrics table, "
                                   "comparison files and plots into the output folder.",
                       epilog=EXAMPLES["fit"], formatter_class=fmt)
    p.add_argument("config", help="CONFIG.toml or FITSNAP.in")
    p.add_argument("-o", "--output", help="output folder (overrides [output] folder)")
    p.add_argument("--epochs", type=int, help="override [training] num_epochs")
    p.add_argument("--max-time", type=float, help="stop training after this many seconds")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted fit from OUTPUT/checkpoint.pt")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    _common(p)

    p = sub.add_parser("eval", help="evaluate a saved model on labelled data",
                       description="Metrics table, peratom.dat, perconfig.dat and parity plots "
                                   "of a saved model on labelled structures.",
                       epilog=EXAMPLES["eval"], formatter_class=fmt)
    p.add_argument("model", help="a saved model file (from 'forcefit fit')")
    p.add_argument("data", nargs="+", help="labelled structures: files, folders or globs")
    p.add_argument("-o", "--output", default="forcefit_eval", help="output folder")
    _data_options(p)
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    _common(p)

    p = sub.add_parser("describe", help="compute the descriptors of a config's data",
                       description="Descriptors of the config's structures to descriptors.npz, "
                                   "per-feature statistics, histograms and radial curves.",
                       epilog=EXAMPLES["describe"], formatter_class=fmt)
    p.add_argument("config", help="CONFIG.toml or FITSNAP.in")
    p.add_argument("-o", "--output", help="output folder (default: the config's)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    _common(p)

    p = sub.add_parser("relax", help="relax a structure with a saved model (ASE)",
                       description="Relax atomic positions (and with --cell the cell) with an "
                                   "ASE optimiser; writes the relaxed structure and trajectory.",
                       epilog=EXAMPLES["relax"], formatter_class=fmt)
    p.add_argument("model", help="a saved model file")
    p.add_argument("structure", help="any file ASE reads (the last frame is used)")
    p.add_argument("--fmax", type=float, default=0.01, help="force threshold, eV/A (0.01)")
    p.add_argument("--steps", type=int, default=500, help="maximum optimiser steps (500)")
    p.add_argument("--cell", action="store_true", help="also relax the cell (FrechetCellFilter)")
    p.add_argument("--optimizer", choices=("bfgs", "fire", "lbfgs"), default="bfgs")
    p.add_argument("-o", "--output", help="relaxed structure file (default: STEM_relaxed.extxyz)")
    p.add_argument("--trajectory", help="trajectory file (default: STEM_relax.traj)")
    _common(p)

    p = sub.add_parser("md", help="molecular dynamics with a saved model (ASE)",
                       description="NVE (velocity Verlet) or NVT (Langevin) dynamics; writes a "
                                   "trajectory and a log of energies and temperature.",
                       epilog=EXAMPLES["md"], formatter_class=fmt)
    p.add_argument("model", help="a saved model file")
    p.add_argument("structure", help="any file ASE reads (the last frame is used)")
    p.add_argument("--ensemble", choices=("nve", "langevin"), default="nve")
    p.add_argument("--temperature", type=float, default=300.0,
                   help="initial (Maxwell-Boltzmann) and Langevin temperature, K (300)")
    p.add_argument("--timestep", type=float, default=1.0, help="time step, fs (1.0)")
    p.add_argument("--steps", type=int, default=1000, help="number of steps (1000)")
    p.add_argument("--friction", type=float, default=0.01,
                   help="Langevin friction, 1/fs (0.01)")
    p.add_argument("--interval", type=int, default=10, help="log/trajectory every N steps (10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial velocities")
    p.add_argument("--trajectory", help="trajectory file (default: STEM_md.traj)")
    p.add_argument("--log", help="energy/temperature log (default: STEM_md.log)")
    _common(p)

    p = sub.add_parser("demo", help="the main job: Cu EMT data, fit, metrics, plots",
                       description="Make ~100 Cu configurations with ASE's EMT calculator, fit "
                                   "a network potential, print the metrics table, write plots.",
                       epilog=EXAMPLES["demo"], formatter_class=fmt)
    p.add_argument("-o", "--output", default="forcefit_demo", help="output folder")
    p.add_argument("--n-configs", type=int, default=100, help="number of configurations (100)")
    p.add_argument("--epochs", type=int, default=300, help="maximum epochs (300)")
    p.add_argument("--max-time", type=float, default=150.0,
                   help="training time limit in seconds (150)")
    p.add_argument("--quick", action="store_true", help="40 configurations, 30 s of training")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the fit")
    _common(p)

    p = sub.add_parser("convert", help="translate a FitSNAP .in file to a forcefit TOML config",
                       description="Translate a FitSNAP input file; unhonoured settings are "
                                   "listed as warnings.",
                       epilog=EXAMPLES["convert"], formatter_class=fmt)
    p.add_argument("input", help="FITSNAP.in")
    p.add_argument("-o", "--output", help="TOML file to write (default: print)")
    _common(p)
    return parser


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", help="force a reader (fitsnap, miniff, extxyz, any ASE format)")
    p.add_argument("--index", default=":", help="frames to read from each file (ASE syntax)")
    p.add_argument("--energy-key", help="info key of the energy (ASE formats)")
    p.add_argument("--forces-key", help="arrays key of the forces (ASE formats)")
    p.add_argument("--stress-key", help="info key of the stress (ASE formats)")
    p.add_argument("--group-key", help="info key naming each structure's group")


# --------------------------------------------------------------------------- helpers


def load_any_config(path: str | os.PathLike):
    """A TOML config or a FitSNAP ``.in`` file (by suffix, else by content).

    Returns ``(config, notes)``: the notes name the FitSNAP settings not honoured (empty for
    a TOML config); the caller logs them once its log file is open.
    """
    from .config import load_config
    from .fitsnap_input import translate_fitsnap_input

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: config file not found")
    if path.suffix.lower() == ".toml":
        return load_config(path), []
    head = path.read_text(errors="replace")[:4000]
    if path.suffix.lower() == ".in" or "[PYTORCH]" in head or "[BISPECTRUM]" in head:
        return translate_fitsnap_input(path)
    return load_config(path), []


def read_data(paths, *, format=None, index=":", energy_key=None, forces_key=None,
              stress_key=None, group_key=None, groups_from="none", require=("energy",)):
    """Read labelled structures with :func:`forcefit.io.read`; groups from folders or files."""
    from . import io

    out = []
    for p in paths:
        kw = {"format": format, "index": index, "energy_key": energy_key,
              "forces_key": forces_key, "stress_key": stress_key, "group_key": group_key,
              "require": require}
        kw = {k: v for k, v in kw.items() if v is not None}
        pp = Path(p)
        if groups_from == "file" and pp.is_file():
            kw["group"] = pp.stem
        elif groups_from == "folder" and pp.is_file():
            kw["group"] = pp.parent.name
        got = io.read(str(p), **kw)
        out += got
    if not out:
        raise UserError(f"no structures read from {', '.join(map(str, paths))}")
    return out


def check_species(structures, species_symbols, where: str) -> None:
    """Every element of the data must be one the descriptors know (clear error otherwise)."""
    import numpy as np
    from ase.data import atomic_numbers, chemical_symbols

    known = {atomic_numbers[s] for s in species_symbols}
    for s in structures:
        extra = set(np.unique(s.numbers).tolist()) - known
        if extra:
            names = ", ".join(chemical_symbols[z] for z in sorted(extra))
            first = s.name or "a structure"
            raise UserError(f"{where}: the data contain {names} (first in {first}) but "
                            f"[descriptors] species = {list(species_symbols)}; "
                            f"add {names} to species or remove it from the data")


def summarise_data(structures) -> str:
    import collections

    import numpy as np
    from ase.data import chemical_symbols

    groups = collections.Counter(s.group for s in structures)
    elements = sorted({int(z) for s in structures for z in np.unique(s.numbers)})
    n_atoms = sum(len(s) for s in structures)
    return (f"{len(structures)} structures, {n_atoms} atoms, elements "
            f"{' '.join(chemical_symbols[z] for z in elements)}, groups "
            + ", ".join(f"{g} ({n})" for g, n in sorted(groups.items())))


def _read_structure(path: str):
    """The last frame of any file ASE reads, as ``ase.Atoms``."""
    import ase.io

    try:
        atoms = ase.io.read(path, index=-1)
    except FileNotFoundError:
        raise UserError(f"{path}: structure file not found") from None
    except Exception as e:  # noqa: BLE001 - any reader failure is the user's file
        raise UserError(f"{path}: cannot read a structure ({type(e).__name__}: {e})") from None
    return atoms


def _load_model(path: str):
    """A saved potential and its ASE calculator."""
    from . import saved

    if not Path(path).exists():
        raise UserError(f"{path}: model file not found")
    potential = saved.load(path)
    return potential, potential.calculator()


def _stem_path(structure: str, suffix: str) -> Path:
    p = Path(structure)
    return p.with_name(p.stem + suffix)


# --------------------------------------------------------------------------- commands


def cmd_convert(args) -> int:
    from .config import dumps_toml
    from .fitsnap_input import translate_fitsnap_input

    # a translation needs no data: the paths are checked when the config is used
    cfg, notes = translate_fitsnap_input(args.input, check_paths=False)
    for n in notes:
        log.warning(f"{args.input}: {n}")
    text = f"# translated by forcefit from {args.input}\n" + dumps_toml(cfg)
    if args.output:
        _write_text(Path(args.output), text)
        log.info(f"wrote {args.output}")
    else:
        print(text)
    return 0


def cmd_relax(args) -> int:

    atoms = _read_structure(args.structure)
    _, calc = _load_model(args.model)
    atoms.calc = calc
    out = Path(args.output) if args.output else _stem_path(args.structure, "_relaxed.extxyz")
    traj = Path(args.trajectory) if args.trajectory else _stem_path(args.structure,
                                                                    "_relax.traj")
    from ase import optimize

    opt_cls = {"bfgs": optimize.BFGS, "fire": optimize.FIRE, "lbfgs": optimize.LBFGS}[
        args.optimizer]
    target = atoms
    if args.cell:
        from ase.filters import FrechetCellFilter

        if not atoms.pbc.all():
            raise UserError(f"{args.structure}: --cell needs a periodic structure")
        target = FrechetCellFilter(atoms)
    e0 = atoms.get_potential_energy()
    log.info(f"relaxing {len(atoms)} atoms from {args.structure}: E = {e0:.6f} eV, "
             f"max |F| = {_fmax(atoms):.4f} eV/A")
    tmp_traj = traj.with_name(f".{traj.name}.tmp")
    with opt_cls(target, trajectory=str(tmp_traj), logfile=None) as opt:
        for k, _ in enumerate(opt.irun(fmax=args.fmax, steps=args.steps)):
            if k % 10 == 0:
                log.info(f"step {k:5d}  E = {atoms.get_potential_energy():.6f} eV  "
                         f"max |F| = {_fmax(atoms):.4f} eV/A")
        converged = opt.converged() if hasattr(opt, "converged") else _fmax(atoms) < args.fmax
    os.replace(tmp_traj, traj)
    _write_atoms(out, atoms)
    e1 = atoms.get_potential_energy()
    status = "converged" if converged else f"NOT converged in {args.steps} steps"
    log.info(f"{status}: E = {e1:.6f} eV (change {e1 - e0:+.6f} eV), max |F| = "
             f"{_fmax(atoms):.4f} eV/A; wrote {out} and {traj}")
    return 0 if converged else 1


def _fmax(atoms) -> float:
    import numpy as np

    return float(np.linalg.norm(atoms.get_forces(), axis=1).max()) if len(atoms) else 0.0


def _write_atoms(path: Path, atoms) -> None:
    from ase.io import write

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(str(tmp), atoms, format="extxyz")
    os.replace(tmp, path)


def _md_record(dyn, atoms, timestep: float, fh, writer) -> tuple[float, float]:
    """Write one log line and one trajectory frame; return (E_total eV, T K)."""
    from ase import units

    n = len(atoms)
    step = dyn.nsteps
    epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
    temp = ekin / (1.5 * units.kB * n) if n else 0.0
    fh.write(f"{step:8d} {step * timestep:10.2f} {epot:14.6f} {ekin:12.6f} "
             f"{epot + ekin:14.6f} {temp:9.2f}\n")
    fh.flush()
    writer.write()
    return epot + ekin, temp


def _md_loop(dyn, atoms, args, fh, writer) -> list[float]:
    """Run ``args.steps`` steps in chunks of ``args.interval``, recording after each chunk."""
    from tqdm import tqdm

    energies = [_md_record(dyn, atoms, args.timestep, fh, writer)[0]]
    done = 0
    with tqdm(total=args.steps, unit="step", disable=not _progress(args.quiet),
              desc="md") as bar:
        while done < args.steps:
            chunk = min(args.interval, args.steps - done)
            dyn.run(chunk)
            done += chunk
            bar.update(chunk)
            etot, temp = _md_record(dyn, atoms, args.timestep, fh, writer)
            energies.append(etot)
            if done % (args.interval * 10) == 0 or done == args.steps:
                log.info(f"step {done:7d}  Etot = {etot:.6f} eV  T = {temp:.1f} K")
    return energies


def cmd_md(args) -> int:
    import numpy as np
    from ase import units
    from ase.io.trajectory import Trajectory
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    if args.steps < 0 or args.timestep <= 0 or args.interval < 1 or args.temperature < 0:
        raise UserError("md: need --steps >= 0, --timestep > 0, --interval >= 1, "
                        "--temperature >= 0")
    atoms = _read_structure(args.structure)
    _, calc = _load_model(args.model)
    atoms.calc = calc
    traj = Path(args.trajectory) if args.trajectory else _stem_path(args.structure, "_md.traj")
    logfile = Path(args.log) if args.log else _stem_path(args.structure, "_md.log")
    rng = np.random.default_rng(args.seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=rng)
    Stationary(atoms)
    dt = args.timestep * units.fs
    if args.ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        dyn = VelocityVerlet(atoms, timestep=dt, logfile=None)
    else:
        from ase.md.langevin import Langevin

        dyn = Langevin(atoms, timestep=dt, temperature_K=args.temperature,
                       friction=args.friction / units.fs, logfile=None, rng=rng)
    tmp_traj = traj.with_name(f".{traj.name}.tmp")
    n = len(atoms)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    log.info(f"{args.ensemble.upper()} MD of {n} atoms from {args.structure}: "
             f"{args.steps} steps of {args.timestep} fs at {args.temperature} K")
    t0 = time.perf_counter()
    try:
        # the log is streamed (not atomic) so that a long run can be followed
        with open(logfile, "w", encoding="utf-8") as fh, \
                Trajectory(str(tmp_traj), "w", atoms) as writer:
            fh.write("# step time_fs Epot_eV Ekin_eV Etot_eV T_K\n")
            energies = _md_loop(dyn, atoms, args, fh, writer)
    finally:
        if tmp_traj.exists():
            os.replace(tmp_traj, traj)
    drift = (energies[-1] - energies[0]) / max(n, 1)
    log.info(f"done in {time.perf_counter() - t0:.1f} s; total-energy change "
             f"{drift * 1e3:+.3f} meV/atom; wrote {traj} and {logfile}")
    return 0


# --------------------------------------------------------------------------- fit, eval, ...


def config_species(cfg, structures) -> list[int]:
    """Species of the descriptors: ``[descriptors] species`` (checked against the data) or the
    elements present in the data."""
    import numpy as np
    from ase.data import atomic_numbers

    if cfg.descriptors.species:
        check_species(structures, cfg.descriptors.species, cfg.source)
        return sorted(atomic_numbers[s] for s in cfg.descriptors.species)
    return sorted({int(z) for s in structures for z in np.unique(s.numbers)})


def read_config_data(cfg, paths=None):
    """The structures of ``[data]`` (or of ``paths``), with groups checked against
    ``[groups]``."""
    d = cfg.data
    structures = read_data(paths or d.paths, format=d.format, index=d.index,
                           energy_key=d.energy_key, forces_key=d.forces_key,
                           stress_key=d.stress_key, group_key=d.group_key,
                           groups_from=d.groups_from)
    present = sorted({s.group for s in structures})
    for g in cfg.groups:
        if g.name not in present:
            from .config import _suggest

            raise UserError(f"{cfg.source}: [groups.{g.name}]: no structure of the data is in "
                            f"group '{g.name}'{_suggest(g.name, present)} (groups in the data: "
                            f"{', '.join(present)})")
    return structures


class _PrintToLog:
    """A stdout stand-in that sends whole lines to the ``forcefit`` logger (so the per-epoch
    lines of the trainer reach the log file)."""

    def __init__(self, logger: logging.Logger):
        self.logger, self.buf = logger, ""

    def write(self, text: str) -> int:
        if "\r" in text or "\x1b" in text:  # a progress bar redraw: not a log line
            return len(text)
        self.buf += text
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            if line.strip():
                self.logger.info(line)
        return len(text)

    def flush(self) -> None:
        if self.buf.strip():
            self.logger.info(self.buf)
        self.buf = ""


class _EpochBar:
    """Trainer callback: a tqdm bar over epochs with the latest losses."""

    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="epoch", desc="training", disable=not enabled,
                        leave=False)

    def __call__(self, epoch, history) -> bool:
        post = {"train": f"{history.train_loss[-1]:.4g}"}
        if history.val_loss and history.val_loss[-1] is not None:
            post["val"] = f"{history.val_loss[-1]:.4g}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)
        return False

    def close(self) -> None:
        self.bar.close()


def run_fit(cfg, *, quiet: bool = False, plots: bool = True, structures=None,
            resume: bool = False):
    """Read the data, fit, write metrics/files/plots; returns the FitResult."""
    from .fit import fit_potential
    from .train.metrics import format_metrics

    t0 = time.perf_counter()
    out = Path(cfg.output.folder)
    log.info(f"forcefit fit {cfg.source} -> {out}")
    if structures is None:
        structures = read_config_data(cfg)
    log.info("data: " + summarise_data(structures))
    species = config_species(cfg, structures)
    dset = build_descriptor_set(cfg.descriptors, species)
    log.info(f"descriptors: {dset.n_features} features per atom, cutoff {dset.cutoff} A, "
             f"{dset.cutoff_function} cutoff function")
    # the core prints its per-epoch lines; they go through the logger (console unless quiet,
    # always the log file), so the core itself is never quiet
    settings = build_fit_settings(cfg, dset, quiet=False)
    from .config import dumps_toml

    _write_text(out / "config_used.toml", f"# the config of this fit (from {cfg.source})\n"
                + dumps_toml(cfg))
    bar = _EpochBar(cfg.training.num_epochs, _progress(quiet))
    try:
        to_log = _PrintToLog(logging.getLogger("forcefit.fit"))
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.redirect_stdout(to_log))
            if not _progress(quiet):  # no bars: the core's stderr notes go through the log
                stack.enter_context(contextlib.redirect_stderr(to_log))
            result = fit_potential(structures, settings, callbacks=[bar], resume=resume)
        to_log.flush()
    except ValueError as e:
        raise UserError(f"fit: {e}") from None
    finally:
        bar.close()
    h = result.history
    if h is not None:
        log.info(f"trained {len(h.epoch)} epochs in {sum(h.time):.1f} s "
                 f"(stopped: {h.stop_reason})")
    log.info("metrics (energy eV/atom, force eV/A, stress eV/A^3):\n"
             + format_metrics(result.metrics).rstrip())
    if plots and cfg.output.plots:
        made = _fit_plots(out, result, species)
        log.info("plots: " + ", ".join(p.name for p in made.values()))
    if cfg.data.test_paths:
        _evaluate_test_paths(cfg, result.model, out / "test_set", plots and cfg.output.plots)
    for kind, p in sorted(result.paths.items()):
        log.info(f"wrote {kind}: {p}")
    log.info(f"done in {time.perf_counter() - t0:.1f} s")
    return result


def _evaluate_test_paths(cfg, model, folder: Path, plots: bool) -> None:
    """``[data] test_paths``: a separate labelled test set, evaluated with the fitted model
    (FitSNAP's "calculate errors on a test set") into ``folder``."""
    from . import plot
    from .fit import evaluate_potential
    from .train.metrics import format_metrics

    structures = read_config_data(cfg, paths=cfg.data.test_paths)
    log.info("test set: " + summarise_data(structures))
    result = evaluate_potential(model, structures, str(folder))
    log.info(f"test-set metrics ({folder}):\n" + format_metrics(result.metrics).rstrip())
    if plots:
        plot.plot_parity_files(folder)


def _fit_plots(out: Path, result, species) -> dict:
    from . import plot

    made = plot.plot_fit_outputs(out)
    try:
        made["dimer"] = plot.plot_pair_curves(result.model, species, out / "dimer_curves.png",
                                              r_min=1.0, r_max=0.999 * result.model.cutoff)
        prior = getattr(result.model, "prior", None)
        if prior is not None:  # the reference potential under the network (e.g. ZBL)
            made["reference"] = plot.plot_pair_curves(prior, species,
                                                      out / "reference_curves.png", r_min=0.5,
                                                      r_max=0.999 * prior.cutoff)
    except Exception as e:  # noqa: BLE001 - a plot must never lose a finished fit
        log.warning(f"pair curve plot skipped: {type(e).__name__}: {e}")
    ds = result.dataset
    if ds is not None and getattr(ds, "values", None) is not None:
        names = getattr(result.model.descriptors, "feature_names", [])
        made["histograms"] = plot.plot_descriptor_histograms(
            ds.values.detach().double().numpy(), names, out / "descriptor_histograms.png")
    return made


def _apply_overrides(cfg, args) -> None:
    if getattr(args, "output", None):
        cfg.output.folder = str(Path(args.output).resolve())
    if getattr(args, "epochs", None) is not None:
        cfg.training.num_epochs = args.epochs
    if getattr(args, "max_time", None) is not None:
        cfg.training.max_time = args.max_time


def cmd_fit(args) -> int:
    from .train import distributed

    cfg, notes = load_any_config(args.config)
    _apply_overrides(cfg, args)
    # under torchrun (RANK/WORLD_SIZE set): one process group; rank 0 logs, plots and writes
    launched = distributed.init_from_env()
    main_rank = distributed.is_main()
    log_name = cfg.output.log if main_rank else f"forcefit.rank{distributed.rank()}.log"
    try:
        with _logging(Path(cfg.output.folder), args.quiet or not main_rank, log_name):
            if launched:
                log.info(f"torch.distributed: rank {distributed.rank()} of "
                         f"{distributed.world_size()} ({torch_backend()})")
            for note in notes:  # FitSNAP settings not honoured: named, never dropped silently
                log.warning(f"{args.config}: {note}")
            if args.resume and not (Path(cfg.output.folder) / "checkpoint.pt").exists():
                raise UserError(f"--resume: no checkpoint.pt in {cfg.output.folder} to continue")
            run_fit(cfg, quiet=args.quiet or not main_rank,
                    plots=not args.no_plots and main_rank, resume=args.resume)
            if launched:  # all ranks done (rank 0 has written) before the group is torn down
                torch_barrier()
    finally:
        if launched:
            distributed.cleanup()
    return 0


def torch_barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


def torch_backend() -> str:
    import torch.distributed as dist

    return dist.get_backend() if dist.is_initialized() else "none"


def cmd_eval(args) -> int:
    from ase.data import chemical_symbols

    potential, _ = _load_model(args.model)  # errors before any folder is made
    structures = read_data(args.data, format=args.format, index=args.index,
                           energy_key=args.energy_key, forces_key=args.forces_key,
                           stress_key=args.stress_key, group_key=args.group_key,
                           groups_from="none")
    known = {int(z) for z in potential.species}
    for s in structures:
        extra = set(s.numbers.tolist()) - known
        if extra:
            raise UserError(f"{s.name}: contains {', '.join(chemical_symbols[z] for z in extra)}"
                            f", which the model {args.model} does not know (species "
                            f"{', '.join(chemical_symbols[z] for z in sorted(known))})")
    with _logging(Path(args.output), args.quiet):
        _eval(args, potential, structures)
    return 0


def _eval(args, potential, structures) -> None:
    from . import plot
    from .fit import evaluate_potential
    from .train.metrics import format_metrics

    log.info(f"forcefit eval {args.model} on " + summarise_data(structures))
    result = evaluate_potential(potential, structures, args.output)
    log.info("metrics (energy eV/atom, force eV/A, stress eV/A^3):\n"
             + format_metrics(result.metrics).rstrip())
    if not args.no_plots:
        made = plot.plot_parity_files(args.output)
        log.info("plots: " + ", ".join(p.name for p in made.values()))
    for kind, p in sorted(result.paths.items()):
        log.info(f"wrote {kind}: {p}")


def cmd_describe(args) -> int:
    import numpy as np

    from . import plot
    from .descriptors import compute_dataset

    cfg, notes = load_any_config(args.config)
    out = Path(args.output).resolve() if args.output else Path(cfg.output.folder)
    with _logging(out, args.quiet, cfg.output.log):
        for note in notes:
            log.warning(f"{args.config}: {note}")
        structures = read_config_data(cfg)
        log.info("data: " + summarise_data(structures))
        dset = build_descriptor_set(cfg.descriptors, config_species(cfg, structures))
        data = compute_dataset(dset, structures, derivatives=False, progress=_progress(
            args.quiet))
        values = data.values.detach().cpu().double().numpy()  # (atoms, features)
        numbers = np.concatenate([s.numbers for s in structures])  # (atoms,)
        owner = np.repeat(np.arange(len(structures)), [len(s) for s in structures])  # (atoms,)
        _save_npz(out / "descriptors.npz", values=values, numbers=numbers, structure=owner,
                  feature_names=np.array(dset.feature_names),
                  names=np.array([s.name for s in structures]))
        stats = _feature_stats(values, dset.feature_names)
        _write_text(out / "descriptor_stats.dat", stats)
        log.info(f"{values.shape[0]} atoms x {values.shape[1]} features -> "
                 f"{out / 'descriptors.npz'}; statistics per feature in "
                 f"{out / 'descriptor_stats.dat'}")
        if not args.no_plots:
            plot.plot_descriptor_histograms(values, dset.feature_names,
                                            out / "descriptor_histograms.png")
            plot.plot_descriptor_radial(dset, out / "descriptor_radial.png")
            log.info("plots: descriptor_histograms.png, descriptor_radial.png")
    return 0


def _feature_stats(values, names) -> str:
    """Per-feature statistics table: index, name, mean, std, min, max, fraction of zeros."""
    import numpy as np

    lines = ["# Index Name Mean Std Min Max Zero_Fraction"]
    mean, std = values.mean(0), values.std(0)  # (features,)
    lo, hi = values.min(0), values.max(0)  # (features,)
    zero = (values == 0).mean(0)  # (features,)
    for k, name in enumerate(names):
        lines.append(f"{k} {name.replace(' ', '')} {mean[k]:.8e} {std[k]:.8e} {lo[k]:.8e} "
                     f"{hi[k]:.8e} {zero[k]:.4f}")
    if not len(names):
        lines.append(f"# no features ({np.shape(values)})")
    return "\n".join(lines) + "\n"


def _save_npz(path: Path, **arrays) -> Path:
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def cmd_demo(args) -> int:
    """Cu EMT data -> demo.toml -> fit -> metrics table and plots, all in ``--output``."""
    from .config import load_config
    from .demo import default_demo_config, make_cu_dataset
    from .io import write_extxyz

    out = Path(args.output).resolve()
    n = 40 if args.quick else args.n_configs
    max_time = 30.0 if args.quick else args.max_time
    t0 = time.perf_counter()
    log.info(f"forcefit demo: making {n} Cu configurations with ASE's EMT calculator ...")
    structures = make_cu_dataset(n, seed=args.seed)
    data = out / "cu_emt_demo.extxyz"
    out.mkdir(parents=True, exist_ok=True)
    write_extxyz(data, structures)  # atomic (temp file + os.replace)
    log.info(f"wrote {data} ({len(structures)} structures, "
             f"{sum(len(s) for s in structures)} atoms) in {time.perf_counter() - t0:.1f} s")
    table = default_demo_config(data.name, ".", epochs=args.epochs, max_time=max_time)
    table["training"]["manual_seed"] = args.seed
    from .config import Config, parse_config

    cfg: Config = parse_config(table, source=str(out / "demo.toml"), root=out)
    from .config import dumps_toml

    _write_text(out / "demo.toml", "# the demo's config: rerun with 'forcefit fit demo.toml'\n"
                + dumps_toml(cfg).replace(str(out) + "/", "").replace(str(out), "."))
    cfg = load_config(out / "demo.toml")
    result = run_fit(cfg, quiet=args.quiet)
    f = result.metric("*ALL", "Test", "Force")
    e = result.metric("*ALL", "Test", "Energy")
    if f is not None and e is not None:
        summary = (f"demo: test force RMSE {f.rmse * 1e3:.1f} meV/A, test energy RMSE "
                   f"{e.rmse * 1e3:.2f} meV/atom; total {time.perf_counter() - t0:.0f} s; "
                   f"model {result.paths.get('model')}")
        log.info(summary)
        if args.quiet:
            print(summary)
    return 0


COMMANDS = {"fit": cmd_fit, "eval": cmd_eval, "describe": cmd_describe, "relax": cmd_relax,
            "md": cmd_md, "demo": cmd_demo, "convert": cmd_convert}


def _log_folder(args) -> Path | None:
    """Where the command's log file goes (its output folder)."""
    if args.command == "demo":
        return Path(args.output)
    if args.command in ("relax", "md"):
        folder = Path(args.structure).resolve().parent
        return folder if folder.is_dir() else None  # never create a folder for a typo
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``forcefit`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    from .config import ConfigError

    known: tuple[type[BaseException], ...] = (UserError, ConfigError, FileNotFoundError)
    with contextlib.suppress(ImportError):
        from .io import ReadError

        known += (ReadError,)
    with contextlib.suppress(ImportError):
        from .structure import StructureError

        known += (StructureError,)
    with contextlib.suppress(ImportError):
        from .plot import PlotError

        known += (PlotError,)
    try:
        if args.command in ("fit", "describe", "eval"):  # they open their log once the
            # inputs are valid (no output folder is made for a command that fails at once)
            return COMMANDS[args.command](args)
        with _logging(_log_folder(args), args.quiet):
            return COMMANDS[args.command](args)
    except known as e:
        if args.debug:
            raise
        print(f"forcefit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"forcefit {args.command}: interrupted", file=sys.stderr)
        return 130
