"""`sdstudio score --more-seeds K`: sample the contenders again until the pick is clear.

When the recommended checkpoint is "not distinguishable" from others (their score intervals
overlap, recommend.py), only more samples can tell them apart. This samples the pick and its
contenders again, from each checkpoint's saved weights (a LoRA, or a full fine-tune's components),
with the run's validation prompts and sampler settings, on fresh seeds (seeds no sample of the run has used), in rounds of the
run's `num_validation_images` seeds, scoring after each round. It stops when no checkpoint is
left that the samples cannot tell from the pick, or when every contender has had K new seeds
(the budget). Every contender gets the same seeds, in the same order, so their samples pair up.

The new samples go into the run's samples/ index like the trainer's, so the Checkpoints screen
shows them beside the others and every later `sdstudio score` counts them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sdstudio.core.errors import SdstudioError
from sdstudio.core.runs.run_dir import LORA_WEIGHTS_NAME, RunDir


@dataclass
class Round:
    steps: list[int]  # the checkpoints sampled
    seeds: dict[int, list[int]]  # step -> the seeds it got this round
    images: int
    seconds: float  # sampling and scoring
    recommendation: Any  # recommend.Recommendation after this round


@dataclass
class MoreSeeds:
    rounds: list[Round] = field(default_factory=list)
    table: Any = None  # scoring.ScoreTable at the end
    outcome: str = ""  # "clear", "budget" or "nothing to compare"
    seconds: float = 0.0  # model loading included


def fresh_seeds(run: RunDir, count: int) -> list[int]:
    """`count` seeds above every seed the run's samples have used."""
    first = max((s.seed for s in run.samples()), default=-1) + 1
    return list(range(first, first + count))


def sample_contenders(run: RunDir, scorer: Any, budget: int, log: Callable[[str], None] = print,
                      device: str | None = None) -> MoreSeeds:
    """Sample the pick and its contenders on up to `budget` fresh seeds each, in rounds, scoring
    (`scorer`: a scoring.RunScorer of this run) after each round; see the module docstring."""
    from sdstudio.core.config import TrainConfig

    if budget < 1:
        raise SdstudioError(f"--more-seeds {budget}: give the number of new seeds per checkpoint (1 or more)")
    _refuse_live(run)
    t_start = time.perf_counter()
    cfg = {**TrainConfig().to_dict(), **run.config()}
    per_round = max(1, min(budget, int(cfg.get("num_validation_images") or 1)))
    seeds = fresh_seeds(run, budget)
    given: dict[int, int] = {}  # step -> how many of `seeds` it has had
    result = MoreSeeds(table=scorer.score())
    generator = None
    try:
        while True:
            rec = result.table.recommendation
            if rec is None or rec.step is None:
                result.outcome = "nothing to compare"
                break
            if not rec.contenders:
                result.outcome = "clear"
                break
            todo = [s for s in sorted({rec.step, *rec.contenders}) if given.get(s, 0) < budget]
            if not todo:
                result.outcome = "budget"
                break
            if generator is None:
                generator = load_generator(cfg, device)
            t0 = time.perf_counter()
            got: dict[int, list[int]] = {}
            for step in todo:
                got[step] = seeds[given.get(step, 0):given.get(step, 0) + per_round]
                given[step] = given.get(step, 0) + len(got[step])
                sample_step(generator, run, step, got[step], cfg)
            result.table = scorer.score()
            images = sum(len(v) for v in got.values()) * len(_prompts(run))
            result.rounds.append(Round(todo, got, images, time.perf_counter() - t0, result.table.recommendation))
            log(describe_round(len(result.rounds), result.rounds[-1]))
    finally:
        if generator is not None:
            generator.close()
    result.seconds = time.perf_counter() - t_start
    return result


def describe_round(number: int, rnd: Round) -> str:
    """One line per round: what was sampled on which seeds, the cost, the pick after it."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for step in rnd.steps:
        groups.setdefault(tuple(rnd.seeds[step]), []).append(step)
    sampled = ", ".join(f"step{'s' if len(steps) > 1 else ''} {', '.join(map(str, steps))} on seed"
                        + (f"s {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f" {seeds[0]}")
                        for seeds, steps in groups.items())
    rec = rnd.recommendation
    after = f"pick step {rec.step}" + (f", not distinguishable from {', '.join(map(str, rec.contenders))}"
                                       if rec.contenders else ", clear")
    return f"round {number}: {sampled} ({rnd.images} images, {rnd.seconds:.1f} s); {after}"


def _refuse_live(run: RunDir) -> None:
    from sdstudio.core.runs.lock import live_trainer

    live = live_trainer(run.path, run.status())
    if live is not None:
        raise SdstudioError(f"{run.path}: a trainer (pid {live.get('pid')}) is running this run; "
                            "sample more seeds once it has stopped or finished")


def _prompts(run: RunDir) -> dict[int, str]:
    """The run's validation prompts by index, as its samples recorded them."""
    return {s.prompt_index: s.prompt for s in run.samples()}


def load_generator(cfg: dict[str, Any], device: str | None) -> Any:
    from sdstudio.core.generation.generator import Generator

    return Generator(str(cfg["pretrained_model_name_or_path"]), device=device,
                     vae=cfg.get("pretrained_vae_model_name_or_path") or None)


def sample_step(generator: Any, run: RunDir, step: int, seeds: list[int], cfg: dict[str, Any]) -> None:
    """The run's validation prompts at `step` on `seeds`, with its sampler settings, into samples/."""
    from sdstudio.core.full.layout import is_full_checkpoint
    from sdstudio.core.generation.generator import GenerateOptions, LoraSpec

    try:
        checkpoint = run.checkpoint(step).path
    except FileNotFoundError:
        checkpoint = run.checkpoint_path(step)
    full = is_full_checkpoint(checkpoint)
    weights = checkpoint / LORA_WEIGHTS_NAME
    if not (full or weights.is_file()):
        raise SdstudioError(f"{run.path}: step {step} has no saved weights any more; "
                            f"run `sdstudio score {run.path}` again")
    size = int(cfg["resolution"])
    with contextlib.ExitStack() as stack:
        if full:  # a full fine-tune: its components swapped into the base pipeline (EMA ones when kept)
            from sdstudio.core.full.loading import checkpoint_weights

            stack.enter_context(checkpoint_weights(generator.pipe, checkpoint))
        else:
            generator.set_loras([LoraSpec(weights)])
            stack.callback(generator.forget_loras)
        for index, prompt in sorted(_prompts(run).items()):
            opts = GenerateOptions(prompt=prompt, seeds=seeds, steps=int(cfg["validation_num_inference_steps"]),
                                   guidance=float(cfg["validation_guidance_scale"]), width=size, height=size)
            for item in generator.generate(opts):
                run.add_sample(step, index, prompt, item.seed, item.image)
