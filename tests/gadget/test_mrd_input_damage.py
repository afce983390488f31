"""h5py reports some damage to a file as RuntimeError (a B-tree or a link table that does not
parse): every read of the replay's input turns it into an InputError naming the item and what
was expected, as for the OSError / KeyError that other damage gives."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
from gadget_helpers import shepp_logan

from gadget.geometry import GridLimits
from gadget.mrd_input import AcquisitionReader, InputError, dataset_group, read_xml
from gadget.replay import ReplayError, check_input

DAMAGE = "Unable to get group info (wrong B-tree signature)"


def _raise(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError(DAMAGE)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shepp_logan(tmp_path_factory.mktemp("damage") / "sl.h5", acceleration=2, noise=0.01)


def test_a_damaged_root_group_names_the_file_and_the_dataset_expected(
    raw: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(h5py.Group, "keys", _raise)
    with pytest.raises(ReplayError) as caught:
        check_input(raw, "dataset")
    message = str(caught.value)
    assert str(raw) in message and DAMAGE in message
    assert "expected an ISMRMRD file with a /dataset dataset group" in message


@pytest.mark.parametrize(
    ("target", "name", "item"),
    [
        (h5py.Dataset, "read_direct", "acquisition 3 cannot be read"),
        (h5py.Dataset, "fields", "acquisition headers 0.. cannot be read"),
        (h5py.Dataset, "__getitem__", "/dataset/xml: cannot be read"),
    ],
)
def test_damage_inside_a_dataset_is_an_input_error_naming_it(
    raw: Path, monkeypatch: pytest.MonkeyPatch, target: type, name: str, item: str
) -> None:
    with h5py.File(raw, "r") as file:
        group = dataset_group(file, raw, "dataset")
        reader = AcquisitionReader.of_group(group, raw, GridLimits())
        monkeypatch.setattr(target, name, _raise)
        with pytest.raises(InputError) as caught:
            if name == "read_direct":
                reader.read(3)
            elif name == "fields":
                next(reader.heads())
            else:
                read_xml(group, raw)
    message = str(caught.value)
    assert item in message and DAMAGE in message and "expected" in message


@pytest.mark.parametrize("member", ["data", "xml"])
def test_a_damaged_datatype_names_the_dataset_and_what_was_expected(
    raw: Path, monkeypatch: pytest.MonkeyPatch, member: str
) -> None:
    """A damaged compound member name: h5py's dtype raises UnicodeDecodeError."""

    def undecodable(self: h5py.Dataset) -> object:
        if self.name.endswith(member):
            raise UnicodeDecodeError("utf-8", b"\xef", 0, 1, "invalid continuation byte")
        return original.fget(self)

    original = h5py.Dataset.dtype
    monkeypatch.setattr(h5py.Dataset, "dtype", property(undecodable))
    with pytest.raises(ReplayError) as caught:
        check_input(raw, "dataset")
    message = str(caught.value)
    assert f"/dataset/{member}: its datatype cannot be read" in message
    assert "invalid continuation byte" in message and "expected" in message
