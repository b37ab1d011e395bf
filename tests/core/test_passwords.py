"""Passwords: production hashes keep argon2id's full cost; the suite's cheap hasher changes
nothing but the time."""

from __future__ import annotations

import argon2

from lamplighter.core import crypto


def test_production_hashes_keep_their_cost() -> None:
    stored = crypto.PRODUCTION_HASHER.hash("correct horse battery")
    parameters = argon2.extract_parameters(stored)
    assert parameters.type is argon2.Type.ID
    assert (parameters.time_cost, parameters.memory_cost, parameters.parallelism) == (
        3,
        65536,
        4,
    )
    assert crypto.verify_password(stored, "correct horse battery")  # whatever hashes new ones
    assert not crypto.verify_password(stored, "wrong horse battery")


def test_the_suites_hasher_is_the_cheap_one_and_its_hashes_verify() -> None:
    stored = crypto.hash_password("correct horse battery")
    assert argon2.extract_parameters(stored).memory_cost == 8  # set by tests/conftest.py
    assert crypto.verify_password(stored, "correct horse battery")
    assert not crypto.verify_password(None, "anything")
