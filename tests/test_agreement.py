"""Session agreement: digests per field, and a mismatch named by field and process."""

from __future__ import annotations

import re

import pytest
import torch

from secvit.runtime.agreement import FIELDS, SessionMismatch, check_agreement, digest_table, versions

FIELDS_OF_A_PARTY = {"settings": {"precision_bits": 16, "provider": "dealer", "truncation": "exact"},
                     "versions": versions(), "architecture (meta.json)": {"model": "vit_lite_1_2_16"},
                     "policy": None, "batch size": 8}


def _gather_of(*tables: torch.Tensor):
    return lambda mine: list(tables)


def test_equal_fields_agree_and_the_dealer_compares_only_what_it_knows():
    mine = digest_table(FIELDS_OF_A_PARTY)
    dealer = digest_table({k: FIELDS_OF_A_PARTY[k] for k in ("settings", "versions")})
    assert not dealer[2:].any()  # unknown to the dealer: all-zero digests
    check_agreement(FIELDS_OF_A_PARTY, _gather_of(mine, mine.clone(), dealer), world_size=2)


@pytest.mark.parametrize("field", FIELDS)
def test_each_field_that_differs_is_named_with_the_processes(field):
    other = dict(FIELDS_OF_A_PARTY, **{field: "something else"})
    tables = digest_table(FIELDS_OF_A_PARTY), digest_table(other)
    expected = re.escape(f"mismatch in the session's {field} between party 0 (owner) and party 1 (client)")
    with pytest.raises(SessionMismatch, match=expected):
        check_agreement(FIELDS_OF_A_PARTY, _gather_of(*tables), world_size=2)


def test_a_dealer_with_other_settings_is_named():
    dealer = digest_table({"settings": dict(FIELDS_OF_A_PARTY["settings"], precision_bits=12),
                           "versions": FIELDS_OF_A_PARTY["versions"]})
    mine = digest_table(FIELDS_OF_A_PARTY)
    with pytest.raises(SessionMismatch, match=r"session's settings between party 0 \(owner\) and party 2 \(dealer\)"):
        check_agreement(FIELDS_OF_A_PARTY, _gather_of(mine, mine, dealer), world_size=2)


def test_unknown_fields_are_refused():
    with pytest.raises(KeyError, match="unknown agreement fields"):
        digest_table({"colour": "blue"})
