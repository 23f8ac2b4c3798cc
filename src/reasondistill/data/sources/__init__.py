"""Where examples come from. Each module turns a ``DataConfig`` into a :class:`Source`
(numbered raw rows + a row → Example conversion); :mod:`reasondistill.data.loaders` runs it.

    files    JSON lines, CSV and Parquet readers (raw cells, nothing coerced)
    columns  data.columns: a table's columns → Example fields
    hf       any Hugging Face ``datasets`` dataset (imported only when used)
    gsm8k    GSM8K solutions → trace, answer, step count
    aqua     AQuA-RAT → prompt with options, letter answer, rationale trace
"""
