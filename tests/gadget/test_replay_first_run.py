"""A new user's first runs of ``gadgetron-diffusion replay``: exit codes, no half-written output,
what the summary counts, progress bars that move."""

from __future__ import annotations

from pathlib import Path

import h5py
import ismrmrd
import pytest
import torch
from cpp_reader import compile_reader, read_with_cpp
from fake_recon import ZeroFilledRss
from gadget_helpers import with_calibration_mode
from test_replay import _cli_options

from gadget.cli import describe_image_sets, main
from gadget.config import GadgetConfig
from gadget.replay import replay


@pytest.fixture(scope="module")
def cpp_reader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_reader(tmp_path_factory.mktemp("cpp"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA device")
def test_device_cuda_without_a_gpu_is_exit_2_and_writes_nothing(
    accelerated_file, fast_properties, tmp_path, capsys
) -> None:
    out = tmp_path / "out.h5"
    options = [o if o != "cpu" else "cuda" for o in _cli_options(fast_properties)]
    assert main(["replay", str(accelerated_file), str(out), *options]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device is available" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_missing_checkpoint_names_its_weights_and_the_rerun_needs_no_overwrite(
    accelerated_file, fast_properties, tmp_path, capsys
) -> None:
    out = tmp_path / "out.h5"
    missing = {**fast_properties, "checkpoint": str(tmp_path / "nowhere" / "prior")}
    assert main(["replay", str(accelerated_file), str(out), *_cli_options(missing)]) == 2
    assert "nowhere/prior.safetensors: checkpoint not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert main(["replay", str(accelerated_file), str(out), *_cli_options(fast_properties)]) == 0


class _Interrupted(ZeroFilledRss):
    def __call__(self, assembled):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt


@pytest.mark.timeout(60)
def test_interrupted_run_leaves_the_output_as_it_was(accelerated_file, tmp_path) -> None:
    out = tmp_path / "out.h5"
    config = GadgetConfig(device="cpu")
    with pytest.raises(KeyboardInterrupt):
        replay(accelerated_file, out, config, progress=False, reconstructor=_Interrupted())
    assert list(tmp_path.iterdir()) == []
    replay(accelerated_file, out, config, progress=False, reconstructor=ZeroFilledRss())
    before = out.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        replay(
            accelerated_file,
            out,
            config,
            out_group="second",
            progress=False,
            reconstructor=_Interrupted(),
        )
    assert out.read_bytes() == before and list(tmp_path.iterdir()) == [out]


@pytest.mark.timeout(60)
def test_second_group_in_an_existing_file_is_read_by_the_cpp_library(
    accelerated_file, cpp_reader, tmp_path
) -> None:
    out = tmp_path / "out.h5"
    config = GadgetConfig(device="cpu")
    replay(accelerated_file, out, config, progress=False, reconstructor=ZeroFilledRss())
    result = replay(
        accelerated_file,
        out,
        config,
        out_group="second",
        progress=False,
        reconstructor=ZeroFilledRss(),
    )
    assert result.run.images_sent == 4
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["dataset", "second"]
        assert f["second/image_1/attributes"].id.get_type().get_cset() == h5py.h5t.CSET_ASCII
    view = read_with_cpp(cpp_reader, out, "image_1", group="second")
    assert [image["repetition"] for image in view.images["image_1"]] == ["0", "1"]
    assert view.meta["image_1", 1]["DataRole"] == ["Image"]


def test_summary_counts_image_sets_by_their_counters() -> None:
    repetitions = [(0, 0, 0, r, 0, 0) for r in range(3)]
    assert describe_image_sets(repetitions) == "3 image sets (slice 0; repetition 0, 1, 2)"
    assert (
        describe_image_sets([(0, 0, 0, 0, 0, 0), (1, 0, 0, 0, 0, 0)]) == "2 image sets (slice 0, 1)"
    )
    assert describe_image_sets([(2, 1, 0, 0, 0, 0)]) == "1 image set (slice 2; contrast 1)"
    assert describe_image_sets([]) == "0 image sets"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_progress_bars_move_during_the_reconstruction(
    accelerated_file, fast_properties, tmp_path, capsys
) -> None:
    """The acquisition bar is redrawn at the count where the first slice is complete when its
    reconstruction starts, and a sampling bar moves over the sampler steps. (The tool's header
    says calibration mode interleaved, where a slice waits for the next repetition for its coil
    maps: embedded here.)"""
    embedded = with_calibration_mode(accelerated_file, "embedded", tmp_path / "embedded.h5")
    with ismrmrd.Dataset(str(embedded), "dataset", create_if_needed=False, mode="r") as d:
        flags = [d.read_acquisition(i) for i in range(d.number_of_acquisitions())]
    first_done = 1 + next(
        i for i, a in enumerate(flags) if a.is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE)
    )
    options = [o for o in _cli_options(fast_properties) if o != "--no-progress"]
    assert main(["replay", str(embedded), str(tmp_path / "out.h5"), *options]) == 0
    err = capsys.readouterr().err
    assert f"| {first_done}/{len(flags)} [" in err, err[-2000:]
    assert "sampling:" in err and f"| {len(flags)}/{len(flags)} [" in err
