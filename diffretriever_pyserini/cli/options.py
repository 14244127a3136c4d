"""Command-line flags from configuration dataclasses: one flag per field, its help from the field's metadata, grouped
by the stage a run setting belongs to; and the dataclass back from parsed arguments (parsing stays here)."""

from __future__ import annotations

import argparse
import dataclasses

from diffretriever_pyserini.pipeline.settings import STAGES, RunConfig, SettingError

STAGE_TITLES = {"dataset": "collection", "model": "model", "readout": "readout", "encode": "encoding and sharding",
                "index": "indexes", "search": "search", "paths": "folders"}


def flag(name: str) -> str:
    """The flag of a setting: ``k_q`` -> ``--k-q``."""
    return "--" + name.replace("_", "-")


def add_field(parser, f: dataclasses.Field) -> None:
    """One flag for a dataclass field (help from its metadata; a bool is a switch)."""
    name = flag(f.name)
    if str(f.type).startswith("bool"):
        if f.default is False:
            parser.add_argument(name, action="store_true", help=f.metadata["help"])
        else:  # bool | None: unset, --flag or --no-flag
            parser.add_argument(name, action=argparse.BooleanOptionalAction, default=f.default,
                                help=f.metadata["help"])
        return
    kind = int if "int" in str(f.type) else float if "float" in str(f.type) else str
    required = f.default is dataclasses.MISSING
    parser.add_argument(name, type=kind, required=required, default=None if required else f.default,
                        choices=f.metadata.get("choices"), help=f.metadata["help"])


def add_options(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per field of a config dataclass."""
    for f in dataclasses.fields(cls):
        add_field(parser, f)


def add_run_options(parser: argparse.ArgumentParser, stages=STAGES) -> None:
    """The RunConfig flags of ``stages``, one argument group per stage (the other settings keep their defaults)."""
    for stage in stages:
        group = parser.add_argument_group(STAGE_TITLES[stage])
        for f in dataclasses.fields(RunConfig):
            if f.metadata["stage"] == stage:
                add_field(group, f)


def from_args(cls, args):
    """The dataclass ``cls`` from parsed arguments (fields without a flag keep their defaults)."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})


def run_config(args) -> RunConfig:
    """The RunConfig of a sub-command's parsed arguments."""
    return from_args(RunConfig, args)


def with_flags(exc: SettingError) -> str:
    """A setting error worded with the command-line flags."""
    return exc.render(flag)
