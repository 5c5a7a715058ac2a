from __future__ import annotations

import json

import optuna
import pytest

from autovision.errors import ModelError, TrainingError
from autovision.models.registry import list_backbones
from autovision.search.prepare import DataProfile
from autovision.search.space import (
    ENV_SPACE,
    MODES,
    SearchSpace,
    default_configs,
    params_for,
    suggest,
)

PHOTOS = DataProfile(
    n_train=500, n_val=50, n_labels=3, median_side=300, grayscale=False, imbalance=1.0
)
DIGITS = DataProfile(
    n_train=500, n_val=50, n_labels=10, median_side=28, grayscale=True, imbalance=3.0
)


def test_default_space_is_the_whole_registry() -> None:
    space = SearchSpace()
    assert space.backbone_names() == list_backbones()
    modes = {m for b in space.backbone_names() for m in space.modes_for(b)}
    assert modes == set(MODES)
    assert space.sizes_for("efficientnet_lite0") == (128, 160, 192, 224)


def test_env_restricts_the_space(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SPACE, json.dumps({"backbones": ["compact_cnn"], "epochs": [1, 2]}))
    space = SearchSpace.from_env()
    assert space.backbone_names() == ["compact_cnn"] and space.epochs == (1, 2)
    assert SearchSpace.from_dict(space.to_dict()) == space
    monkeypatch.setenv(ENV_SPACE, "{nope")
    with pytest.raises(TrainingError, match="not valid JSON"):
        SearchSpace.from_env()
    with pytest.raises(TrainingError, match="unknown search-space keys"):
        SearchSpace.from_dict({"backbone": ["x"]})
    with pytest.raises(ModelError, match="unknown backbone"):
        SearchSpace.from_dict({"backbones": ["resnet9000"]})


def test_epochs_of_a_custom_space_are_checked() -> None:
    """``epochs: [2]`` (one value) once crashed a console training worker with a
    ValueError; one value is a fixed count, anything else is a TrainingError."""
    assert SearchSpace.from_dict({"epochs": [2]}).epochs == (2, 2)
    assert SearchSpace.from_dict({"epochs": 3}).epochs == (3, 3)
    for bad, why in (
        ([], "must be N or"),
        ([1, 2, 3], "must be N or"),
        ([5, 2], "MIN is above MAX"),
        (["2", 4], "positive integer"),
        ([0, 4], "positive integer"),
        (True, "positive integer"),
    ):
        with pytest.raises(TrainingError, match=why):
            SearchSpace.from_dict({"epochs": bad})
    with pytest.raises(TrainingError, match="'batch_size' must be a positive integer"):
        SearchSpace.from_dict({"batch_size": -1})


@pytest.mark.parametrize(
    ("profile", "first"), [(PHOTOS, "efficientnet_lite0"), (DIGITS, "compact_cnn")]
)
def test_defaults_fit_the_data(profile: DataProfile, first: str) -> None:
    cfgs = default_configs(SearchSpace(), profile, multi_label=False, gpu=False)
    assert cfgs[0].backbone == first
    if first == "compact_cnn":
        assert cfgs[0].mode == "scratch" and cfgs[0].image_size == 28 and cfgs[0].hflip
        assert cfgs[1].backbone == first and not cfgs[1].hflip
        assert cfgs[0].imbalance == "weighted_loss"
    else:
        assert cfgs[0].mode == "linear" and cfgs[0].image_size == 224
        # the same frozen features on squashed and on padded images (clip art, product shots)
        assert [(c.mode, c.resize) for c in cfgs[:2]] == [("linear", "squash"), ("linear", "pad")]
        assert cfgs[0].label_smoothing == 0.0 and cfgs[0].l2 == 1e-2


@pytest.mark.parametrize("profile", [PHOTOS, DIGITS])
def test_enqueued_params_reproduce_the_config(profile: DataProfile) -> None:
    space = SearchSpace()
    study = optuna.create_study(direction="maximize")
    cfgs = default_configs(space, profile, multi_label=False, gpu=False)
    for cfg in cfgs:
        study.enqueue_trial(
            params_for(cfg, base_model=False, imbalanced=profile.imbalance > 1.5, multi_label=False)
        )
    for cfg in cfgs:
        got = suggest(study.ask(), space, profile, multi_label=False, gpu=False)
        assert got == cfg


def test_suggestions_cover_modes_and_stay_valid() -> None:
    space = SearchSpace()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        cfg = suggest(study.ask(), space, PHOTOS, multi_label=True, gpu=False)
        seen.add(cfg.mode)
        assert cfg.image_size in space.sizes_for(cfg.backbone)
        assert cfg.label_smoothing == 0.0 and cfg.mix in ("none", "mixup", "cutmix")
    assert seen == set(MODES)


@pytest.mark.parametrize("modes", [("linear",), ("finetune_full",), ("finetune_top", "linear")])
def test_base_model_first_trials_stay_inside_the_modes_of_the_space(modes) -> None:
    """With a base model and a restricted space, every enqueued first trial can be replayed
    (a ``finetune_top`` first trial outside the space failed the whole search)."""
    space = SearchSpace(modes=modes)
    base = dict(base_backbone="efficientnet_lite0", base_size=32)
    cfgs = default_configs(space, PHOTOS, multi_label=False, gpu=False, **base)
    assert cfgs and {c.mode for c in cfgs} <= {*modes, "finetune_full"}
    study = optuna.create_study(direction="maximize")
    for cfg in cfgs:
        study.enqueue_trial(params_for(cfg, base_model=True, imbalanced=False, multi_label=False))
    for cfg in cfgs:
        got = suggest(study.ask(), space, PHOTOS, multi_label=False, gpu=False, **base)
        assert got == cfg
