"""How to measure latency: the one schema. ``LatencySettings`` is what a backend needs; ``LatencyConfig`` adds
which backend and whether to cache, and is the ``latency:`` section of an experiment config. Every default
lives here: the CLI options and the configs read them from these fields."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field

from mnas import MnasError
from mnas.schema import Schema, validate

# the settings that change what is timed (the cache key); the other statistics knobs are left out on
# purpose except the run counts, so a 3-run quick look never stands in for a 30-run measurement
KEY_FIELDS = ("resolution", "batch", "threads", "in_chans", "num_classes", "runs", "warmup", "rounds",
              "pin_core", "calibrate_bn", "clock")  # and quantize, when not "none" (key_fields)


class LatencySettings(Schema):
    """``runs`` timed inferences split over ``rounds`` rounds after ``warmup`` untimed ones; the result is the
    median of the round medians. When the rounds disagree by more than ``cv_threshold`` the whole measurement
    is repeated, at most ``max_remeasures`` times, and the quietest attempt is kept."""

    resolution: int = Field(224, ge=8, description="input height and width, pixels")
    batch: int = Field(1, ge=1, description="images per inference call")
    threads: int = Field(1, ge=1, description="runtime threads")
    runs: int = Field(30, ge=1, description="timed runs (split into rounds)")
    warmup: int = Field(5, ge=0, description="untimed runs first")
    cv_threshold: float = Field(0.05, gt=0, description="re-measure when the round medians' CV is above this")
    pin_core: Optional[int] = Field(None, ge=0, description="pin to this CPU core while timing (Linux)")
    in_chans: int = Field(3, ge=1, description="input channels")
    num_classes: int = Field(1000, ge=1, description="classifier outputs")
    rounds: int = Field(5, ge=1, description="rounds the timed runs are split into")
    max_remeasures: int = Field(2, ge=0, description="repeats of a noisy measurement at most")
    calibrate_bn: bool = Field(True, description="calibrate BatchNorm statistics before timing")
    # "wall": elapsed time, what a user waits. "cpu": CPU time of this process, which leaves out the time the
    # OS gives to other programs; on a shared, loaded machine it estimates the quiet-machine latency of a
    # single-threaded run much better (it still includes cache/memory contention).
    clock: Literal["wall", "cpu"] = Field("wall", description="wall (elapsed) or cpu (this process's CPU time: "
                                                              "robust on a loaded machine, one thread)")

    # "int8": the network is timed as a post-training statically quantised file (mnas.model.quantize), the
    # way it ships with ``mnas export --quantize int8``; its activation ranges are calibrated on noise,
    # which fixes the kernels and shapes that are timed, not the accuracy
    quantize: Literal["none", "int8"] = Field("none", description="none (float32) or int8: time the network "
                                                                  "statically quantised (file backends only)")

    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.in_chans, self.resolution, self.resolution)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencySettings:
        """Keys this class does not know are dropped: stored results may come from other mnas versions."""
        if not isinstance(data, dict):
            raise MnasError(f"latency settings must be a mapping, got {type(data).__name__}")
        return validate(cls, {k: v for k, v in data.items() if k in cls.model_fields}, "latency settings")

    def replace(self, **changes: Any) -> LatencySettings:
        """A copy with ``changes``, validated like any other settings."""
        return validate(type(self), {**self.model_dump(), **changes}, "latency settings")

    def key_fields(self) -> dict[str, Any]:
        d = self.model_dump(include=set(KEY_FIELDS))
        if self.quantize != "none":  # only then: float32 results cached before this field keep their keys
            d["quantize"] = self.quantize
        return d


class LatencyConfig(LatencySettings):
    """The ``latency:`` section of an experiment config."""

    backend: str = Field("onnxruntime", description="latency backend spec: onnxruntime, torch, openvino, litert, "
                                                    "remote:URL[,URL], lut:PATH or a plugin's name")
    cache: bool = Field(True, description="reuse results measured before on the same backend and device")
    # issue 32: a busy machine moved the absolute figures of a search by up to 2x; timed beside T in the same
    # rounds, both move and the ratio stays
    relative: bool = Field(True, description="time each trial interleaved with T's model (reward.target_model) "
                                             "and reward its ratio x the stored T; in-process backends only")
    retime_top: int = Field(5, ge=0, description="at the end of a search, re-time the Pareto front and the top "
                                                 "K trials by reward interleaved with T's model (0: do not)")

    def settings(self) -> LatencySettings:
        """The measurement settings alone, without the backend and cache choice."""
        return LatencySettings.from_dict(self.model_dump())
