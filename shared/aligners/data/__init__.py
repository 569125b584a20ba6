"""Training data: record types, readers/writers for published layouts, synthesis, DPO export."""

from aligners.data.dpo import dpo_records, write_dpo
from aligners.data.io import (
    LAYOUTS,
    DataFormatError,
    ReadResult,
    RowError,
    append_jsonl,
    detect_layout,
    iter_rows,
    read_examples,
    read_triples,
    split_hh_transcript,
    write_records,
)
from aligners.data.perturb import factuality_proxy_examples
from aligners.data.records import (
    CorrectionTriple,
    InspectorExample,
    RequestExample,
    triples_to_examples,
)

__all__ = [
    "LAYOUTS",
    "CorrectionTriple",
    "DataFormatError",
    "InspectorExample",
    "RequestExample",
    "ReadResult",
    "RowError",
    "append_jsonl",
    "detect_layout",
    "dpo_records",
    "factuality_proxy_examples",
    "iter_rows",
    "read_examples",
    "read_triples",
    "split_hh_transcript",
    "triples_to_examples",
    "write_dpo",
    "write_records",
]
