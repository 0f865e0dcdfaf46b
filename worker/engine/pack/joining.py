"""A member's arrival: its spec and data turned into a `Member` whose state is exactly
its solo run's before the first step (or at its checkpoint), its rows in the store."""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping
from typing import Any

import torch
from torch import Tensor

from fitq.worker.engine import optimizers
from fitq.worker.engine.callbacks import EarlyStopping
from fitq.worker.engine.errors import DataError
from fitq.worker.engine.model import check_features
from fitq.worker.engine.pack import solo
from fitq.worker.engine.pack.data import Store
from fitq.worker.engine.pack.member import Member
from fitq.worker.engine.pack.network import Network
from fitq.worker.engine.pack.optim import own_slots, slot_init

_unique = itertools.count()  # store keys for data that names no dataset (never shared)


def new_member(
    member_id: str,
    spec: Mapping[str, Any],
    data: tuple[Any, Any, tuple[Any, Any] | None],
    keys: tuple[Hashable | None, Hashable | None],
    loss: str,
    net: Network,
    store: Store,
    like: Tensor,
    metrics: int,
) -> Member:
    """The member of `spec` trained on data = (x, y, validation) with the pack's `loss`
    (its name), its rows put in `store` under keys = (dataset_key, validation_key)
    (None: rows of its own). As the solo `inputs.prepare`, with the rows shared."""
    x, y, validation = data
    fit = solo.fit_config(spec["fit"])
    config = optimizers.make_config(spec["compile"]["optimizer"])
    seed = int(spec["seed"])
    xa = check_features(x, net.input_dim)
    n = xa.shape[0]
    n_train = fit.train_rows(n, validation is not None)
    if n_train < 1:
        raise DataError(f"validation_split leaves no training rows out of {n}")
    k, cpu = net.output_dim, torch.device("cpu")
    ya = solo.targets(y, n, "y", loss, k, cpu)
    norm = solo.normalization(xa[:n_train]) if fit.normalize else None
    dataset = keys[0] if keys[0] is not None else ("own", next(_unique))
    # the rows as trained on: raw, or normalized with the stats of these training rows
    train_key = (dataset, n_train if norm else None)
    if train_key not in store:
        store.put(train_key, _normalized(torch.from_numpy(xa), norm), ya)
    val_key: Hashable | None = train_key if n_train < n else None  # validation_split's rows
    val_start, val_rows = n_train, n - n_train
    if validation is not None:
        xv = check_features(validation[0], net.input_dim, "validation x")
        yv = solo.targets(validation[1], xv.shape[0], "validation y", loss, k, cpu)
        vset = keys[1] if keys[1] is not None else ("own", next(_unique))
        val_key, val_start, val_rows = (vset, train_key if norm else None), 0, xv.shape[0]
        if val_key not in store:
            store.put(val_key, _normalized(torch.from_numpy(xv), norm), yv)
    flat = like.new_zeros(net.size)
    named = net.named(flat)
    for name, t in solo.initial_weights(spec["model"], seed).items():
        named[name].copy_(t)
    return Member(
        id=member_id,
        spec=dict(spec),
        seed=seed,
        fit=fit,
        optimizer=config,
        early_stopping=EarlyStopping.from_spec(fit.early_stopping),
        n_train=n_train,
        batch_size=fit.batch_size or n_train,
        steps=fit.steps(n_train),
        train_key=train_key,
        val_key=val_key,
        val_start=val_start,
        val_rows=val_rows,
        norm=norm,
        shuffle_gen=solo.shuffle_generator(seed),
        dropout_gen=solo.dropout_generator(seed, like.device),
        flat=flat,
        slots={s: torch.full_like(flat, slot_init(config, s)) for s in own_slots(config)},
        metrics=metrics,
    )


def _normalized(x: Tensor, norm: tuple[Tensor, Tensor] | None) -> Tensor:
    """fit.normalize as the solo run does it, once, to the resident rows (float32)."""
    return x if norm is None else solo.normalized(x, norm)
