"""TFDS builders (array_record, no TensorFlow needed) for every record format and the arithmetic task.

One builder, `PrmRecords`, with one BuilderConfig per format (`readers.FORMATS` + 'arith'). Each
example stores a `Record` as one JSON string (feature `record`), so every format shares one schema.
Prepared from files the user points to:

    prepare("processbench", {"gsm8k": [".../gsm8k.json"], "math": [".../math.json"]}, out_dir)
    src = data_source(out_dir, "processbench", "gsm8k")      # len(src), src[i] -> Record

Layout: out_dir/prm_records/<format>/1.0.0/prm_records-<split>.array_record-0000k-of-0000n. Read
back (random access, no TensorFlow) with grain's ArrayRecordDataSource plus the TFDS feature decoder,
or with `tfds.builder_from_directory(...).as_data_source(split)` where grain is missing.
Note: TFDS shuffles examples by key hash when writing; the loader shuffles again anyway.
"""

from __future__ import annotations

import json
import os

from prm_jax.data import arith, readers
from prm_jax.data.records import Record, SkipCounter

CONFIGS = readers.FORMATS + ("arith",)
VERSION = "1.0.0"


def _builder_cls():
    """Returns the builder class, defined on first use so that tfds is imported only when needed."""
    global _CLS
    if _CLS is not None:
        return _CLS
    import tensorflow_datasets as tfds

    class PrmRecords(tfds.core.GeneratorBasedBuilder):
        """PRM records of one format, each a JSON-serialised prm_jax.data.records.Record."""

        VERSION = tfds.core.Version(VERSION)
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n, description=f"{n} records") for n in CONFIGS]

        def __init__(self, *, splits=None, reader_kw=None, arith_cfg=None, skipped=None, **kw):
            self._splits = splits or {}
            self._reader_kw = reader_kw or {}
            self._arith_cfg = arith_cfg
            self._skipped = skipped if skipped is not None else SkipCounter()
            super().__init__(**kw)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description="PRM step-labelled records as JSON (prm_jax.data.records.Record)",
                features=tfds.features.FeaturesDict({"record": tfds.features.Text()}),
            )

        def _split_generators(self, dl_manager):
            return {name: self._generate_examples(name, spec) for name, spec in self._splits.items()}

        def _generate_examples(self, split, spec):
            if self.builder_config.name == "arith":
                seed, count = spec
                cfg = self._arith_cfg or arith.ArithConfig()
                for i in range(count):
                    yield i, {"record": arith.make_record(cfg, seed, i).to_json()}
                return
            recs = readers.read(self.builder_config.name, spec, skipped=self._skipped, **self._reader_kw)
            for i, r in enumerate(recs):
                yield i, {"record": r.to_json()}

    # The builder has no source folder of its own (no checksums, no metadata files). Without this,
    # tfds 4.9.10 probes the package path via importlib_resources, which an editable install lacks.
    PrmRecords.code_path = None
    _CLS = PrmRecords
    return _CLS


_CLS = None


def prepare(fmt: str, splits: dict, out_dir: str, *, skip_bad: bool = False, arith_cfg=None, **reader_kw) -> dict:
    """Builds the dataset and returns {split: examples, 'skipped': ...}.

    `splits` maps a split name to path(s) for file formats, or to (seed, count) for 'arith'.
    """
    if fmt not in CONFIGS:
        raise ValueError(f"unknown format {fmt!r}; known: {CONFIGS}")
    import tensorflow_datasets as tfds

    if os.path.exists(os.path.join(builder_dir(out_dir, fmt), "dataset_info.json")):
        # tfds would silently reuse it and write none of the new splits
        raise FileExistsError(
            f"{fmt} is already prepared in {builder_dir(out_dir, fmt)}; use another out_dir "
            "or delete it (prepare all splits in one call)"
        )
    skipped = SkipCounter()
    builder = _builder_cls()(
        config=fmt,
        data_dir=out_dir,
        file_format="array_record",
        splits=splits,
        reader_kw=dict(reader_kw, skip_bad=skip_bad),
        arith_cfg=arith_cfg,
        skipped=skipped,
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(download_mode=tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS)
    )
    info = {name: int(builder.info.splits[name].num_examples) for name in splits}
    info["skipped"] = skipped.as_dict()
    info["dir"] = builder_dir(out_dir, fmt)
    with open(os.path.join(info["dir"], "prm_jax_prepare.json"), "w") as f:
        json.dump(info, f, indent=1)
    return info


def builder_dir(out_dir: str, fmt: str) -> str:
    """Returns the folder TFDS writes `fmt` into under `out_dir`."""
    return os.path.join(out_dir, "prm_records", fmt, VERSION)


class RecordSource:
    """Random-access source of Records over a prepared split: len(src), src[i].

    backend='grain' reads the split's files with grain's ArrayRecordDataSource and decodes them
    with the dataset's TFDS features; 'tfds' uses `as_data_source`; 'auto' is grain if importable.
    """

    def __init__(self, directory: str, split: str, backend: str = "auto"):
        import tensorflow_datasets as tfds

        if not os.path.isdir(directory):
            raise FileNotFoundError(f"no prepared dataset at {directory}")
        builder = tfds.builder_from_directory(directory)
        if split not in builder.info.splits:
            raise KeyError(f"split {split!r} not in {directory}; it has {list(builder.info.splits)}")
        if backend == "auto":
            try:
                import grain  # noqa: F401

                backend = "grain"
            except ImportError:
                backend = "tfds"
        if backend == "grain":
            import grain

            files = [str(f) for f in builder.info.splits[split].filepaths]
            self.source = grain.sources.ArrayRecordDataSource(files)
            self._decode = builder.info.features.deserialize_example_np
        elif backend == "tfds":
            self.source = builder.as_data_source(split)
            self._decode = lambda x: x
        else:
            raise ValueError(f"backend must be 'auto', 'grain' or 'tfds', got {backend!r}")
        self.directory, self.split, self.backend = directory, split, backend

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Record:
        raw = self._decode(self.source[int(i)])["record"]
        return Record.from_json(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def data_source(
    out_dir_or_builder_dir: str, fmt: str | None = None, split: str = "train", backend: str = "auto"
) -> RecordSource:
    """Returns a RecordSource for `split`, given out_dir and fmt, or the builder folder itself."""
    d = builder_dir(out_dir_or_builder_dir, fmt) if fmt else out_dir_or_builder_dir
    return RecordSource(d, split, backend)
