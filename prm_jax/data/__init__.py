"""Data: one record model, readers per format, the arithmetic task, tokenization and the loader.

Modules: `records` (Record, DataError, SkipCounter), `readers` (one reader per file format),
`arith` (the synthetic task, its verifier and CharTokenizer), `tokenizers` (HFTokenizer,
make_tokenizer), `tokenize` (render, encode_example, encode_prefix, pad_batch, pack), `pipeline`
(make_train_iterator), `tfds_builders` (array_record preparation), `stats`.
Only this package imports tensorflow_datasets or grain, and only inside the functions that need them.
"""

from prm_jax.data.records import DataError, Record, SkipCounter

__all__ = ["DataError", "Record", "SkipCounter"]
