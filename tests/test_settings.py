"""csra.settings: a setting's roles, declared once beside it, and the lists derived from them."""

from dataclasses import dataclass

import pytest

from csra.settings import LOCAL, MACHINE, RESUMABLE, UNSEARCHED, roles_of, setting, with_role
from csra.train.config import MACHINE_SETTINGS, RESUMABLE_CHANGES, TrainConfig
from stages.train import TrainParams


@dataclass(frozen=True)
class Toy:
    a: int = setting(roles=(LOCAL,))
    b: int = setting()
    c: int = setting(roles=(UNSEARCHED, LOCAL))


def test_with_role_lists_the_fields_that_declare_it_in_field_order():
    assert with_role(Toy, LOCAL) == ("a", "c")
    assert with_role(Toy, UNSEARCHED) == ("c",)
    assert with_role(Toy, MACHINE) == ()
    assert roles_of(Toy, "b") == ()


def test_an_unknown_role_is_refused_where_it_is_declared():
    with pytest.raises(ValueError, match="unknown setting role"):
        setting(roles=("searched",))


def test_the_training_roles_agree():
    # a machine's setting changes with the machine, so a resume elsewhere must accept it
    assert MACHINE_SETTINGS and set(MACHINE_SETTINGS) <= set(RESUMABLE_CHANGES)
    assert all(RESUMABLE in roles_of(TrainConfig, name) for name in RESUMABLE_CHANGES)
    # the stage's num_workers ('auto' or a number) stands for the library's and plays its roles
    assert roles_of(TrainParams, "num_workers") == roles_of(TrainConfig, "num_workers")
