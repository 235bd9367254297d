"""The carriers app's own inbound sink: facts about the carrier's records that no other app
acts on (`inbound.CARRIER_FACTS`): the corp tag library changed, a handover failed or
completed."""

from __future__ import annotations

from yutang.carriers import handover, inbound, tagsync


def handle(fact: inbound.InboundFact) -> None:
    if isinstance(fact, inbound.CorpTagsChanged):
        tagsync.pull_corp_tags(brand_id=fact.brand_id)
    elif isinstance(fact, inbound.TransferFailed):
        handover.transfer_failed(fact)
    elif isinstance(fact, inbound.ContactTransferred):
        handover.transfer_completed(fact)
