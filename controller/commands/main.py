"""The ``mfrm`` group: sub-commands are imported only when called, so ``mfrm --help`` is instant and
a command that needs torch does not make every other command pay for it."""

from __future__ import annotations

import importlib

import click

from controller.version import __version__

#: command name -> ("module:attribute" of a click.Command, one-line help shown without importing it).
COMMANDS: dict[str, tuple[str, str]] = {
    "mfg": ("mfg.cli:mfg_group", "Mean-field games: reproduce the paper's exploitability figures, evaluate policies."),
    "simulate": ("controller.commands.experiments:simulate_command", "Run one policy on the embedded simulated cluster."),
    "compare": ("controller.commands.experiments:compare_command",
                "Run several policies on the same simulated workload and compare them."),
    "demo": ("controller.commands.experiments:demo_command",
             "Compare the managers on the paper-scale simulated cluster (the README's main job)."),
    "train": ("controller.commands.train:train_command", "Train a learner (NAC-Linear or NAC-NN) on the simulated cluster."),
    "run": ("controller.commands.run:run_command", "Run the control loop as a daemon, with /metrics and /healthz."),
    "bench": ("controller.commands.bench:bench_command",
              "The evaluation suite: scenarios x baselines swept over their knobs x learners x seeds."),
    "replay": ("controller.commands.replay:replay_command",
               "Replay Azure trace invocations against an OpenWhisk API (open loop)."),
}


class LazyGroup(click.Group):
    """A click group that imports a sub-command's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target[0].split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mfrm")
def main() -> None:
    """mfrm: a mean-field resource manager for serverless (OpenWhisk) clusters.

    Every function gets an agent; all agents share one policy learned online by a natural
    actor-critic for mean-field games (Mao et al., NeurIPS 2022).
    """
