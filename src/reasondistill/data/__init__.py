"""Torch-free data core: examples, loaders, the format contract, splits and sampling."""

from reasondistill.data.example import Example
from reasondistill.data.format import DEFAULT_PROMPT_SUFFIX, FormatSpec, build_record, build_records

__all__ = ["Example", "FormatSpec", "DEFAULT_PROMPT_SUFFIX", "build_record", "build_records"]
