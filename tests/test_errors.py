"""Errors: what they say and that they travel between processes."""

from __future__ import annotations


def test_file_errors_survive_pickling() -> None:
    import pickle

    from napari_patchdx.errors import InputFileError, MissingMetadataError

    for exc in (InputFileError("/data/a.svs", "truncated"), MissingMetadataError("b.tif", "no mpp")):
        exc.add_note("raised in worker 1")
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert back.path == exc.path and back.problem == exc.problem and back.__notes__ == ["raised in worker 1"]
