"""The quota model: the stored document in base units."""

from __future__ import annotations

from decimal import Decimal

from app.domain.quota import NO_QUOTA, ResourceQuota, check_limit, document, from_document


def test_stored_document_reads_in_base_units() -> None:
    doc = document(
        {
            "gpu": {"deserved": Decimal("0.5"), "limit": Decimal(2), "overQuotaWeight": 3},
            "cpu": {"deserved": "500m", "limit": None},
            "memory": {"deserved": "1Gi", "limit": "2Gi", "overQuotaWeight": Decimal("0.5")},
        }
    )
    assert doc["gpu"] == {"deserved": "0.5", "limit": "2", "overQuotaWeight": "3"}
    quota = from_document(doc)
    assert quota.gpu == ResourceQuota(Decimal("0.5"), Decimal(2), Decimal(3))
    assert quota.cpu == ResourceQuota(Decimal("0.5"), None, Decimal(1))
    assert quota.memory.deserved == 1024**3
    assert quota.memory.cap == 2 * 1024**3
    assert quota.limited == ("gpu", "cpu", "memory")


def test_left_out_resources_are_not_limited() -> None:
    quota = from_document({"gpu": {"deserved": "4", "limit": None, "overQuotaWeight": "1"}})
    assert quota.cpu.unlimited
    assert quota.cpu.cap is None
    assert quota.limited == ("gpu",)
    assert from_document({}) == NO_QUOTA == from_document(None)


def test_limit_is_compared_numerically() -> None:
    assert check_limit("1Gi", "1G") == "must be at least deserved (1Gi)"
    assert check_limit("1G", "1Gi") is None
    assert check_limit(Decimal(4), None) is None
