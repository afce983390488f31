#!/usr/bin/env bash
# Reproduces docker/Dockerfile.gadgetron's install where no container engine can run (a separate
# CI step, about 2-3 minutes; not part of pytest):
#   * the base image's conditions: an env created by, and owned by, uid 1000 (not root), holding
#     Gadgetron's pins (docker/gadgetron_env_constraints.txt: numpy 1.26.4, ismrmrd 1.14.0,
#     gadgetron 1.4.1; h5py 3.8.0 here, the first release with Python 3.11 wheels, for 3.7.0);
#   * the sources copied owned by that user, torch 2.13.0 installed first, then the project
#     (not editable) with the pins held by the same constraints file, all as uid 1000;
#   * then, from the installed copy (not the work tree): the pins are unchanged, the gadget's
#     modules import, and the tests that drive the gadget as Gadgetron does (execute and connect
#     modes through gadgetron-python), the images and the config pass in that env; then a replay.
# Python: the Gadgetron env's 3.10 checks the syntax of every module; the env itself is built
# with 3.11, the version whose CPU torch wheel lies on these machines (PyPI's Linux torch is the
# multi-GB CUDA 13 build).
#
#   bash scripts/check_gadgetron_env.sh          # as root (switches to uid 1000 with setpriv)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
USER_UID=${GADGETRON_UID:-1000}
PYTHON=${CHECK_PYTHON:-$(command -v /usr/bin/python3.11 || command -v python3.11)}  # not a shim under /root
WORK=$(mktemp -d /tmp/gadgetron-env.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"
failures=()

step() { echo "== $*"; }
as_user() {  # run as uid 1000 with a home of its own, like the image's USER
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid="$USER_UID" --regid="$USER_UID" --clear-groups \
      env -u PYTHONPATH HOME="$WORK/home" USER=gadgetron LOGNAME=gadgetron "$@"
  else
    env -u PYTHONPATH HOME="$WORK/home" "$@"
  fi
}

step "Python 3.10 (the Gadgetron env's) compiles every module"
PY310=""
for candidate in python3.10 /usr/bin/python3.10 /root/.pyenv/versions/3.10.*/bin/python; do
  if "$candidate" -c "" 2>/dev/null; then PY310=$candidate; break; fi
done
if [ -n "$PY310" ]; then
  "$PY310" - "$ROOT" <<'EOF' || failures+=("python 3.10 syntax")
import pathlib, sys
root = pathlib.Path(sys.argv[1])
files = [p for d in ("gadget", "diffusion_core") for p in (root / d).rglob("*.py")]
for path in files:
    compile(path.read_text(), str(path), "exec")  # raises SyntaxError on 3.11+ syntax
print(f"{len(files)} modules compile under {sys.version.split()[0]}")
EOF
else
  echo "no python3.10 here: syntax check skipped"
fi

step "env and sources owned by uid $USER_UID"
mkdir -p "$WORK/home" "$WORK/src" "$WORK/env" "$WORK/out"
(cd "$ROOT" && git ls-files -z pyproject.toml README.md diffusion_core gadget tests docker \
  | xargs -0 tar -cf - ) | tar -xf - -C "$WORK/src"
if [ "$(id -u)" -eq 0 ]; then chown -R "$USER_UID:$USER_UID" "$WORK/home" "$WORK/src" "$WORK/env" "$WORK/out"; fi
sed 's/^h5py==3.7.0$/h5py==3.8.0/' "$ROOT/docker/gadgetron_env_constraints.txt" > "$WORK/constraints.txt"
chmod 644 "$WORK/constraints.txt"
as_user "$PYTHON" -m venv "$WORK/env"
PIP=("$WORK/env/bin/python" -m pip install -q --no-cache-dir -c "$WORK/constraints.txt")

step "Gadgetron's pins, then torch, then the project (not editable), as uid $USER_UID"
as_user "${PIP[@]}" numpy ismrmrd gadgetron h5py
as_user "${PIP[@]}" torch==2.13.0
as_user "${PIP[@]}" "$WORK/src"
as_user "${PIP[@]}" "pytest>=8" "pytest-timeout>=2.2"

step "pins unchanged, modules import from the installed copy"
cd "$WORK"
as_user "$WORK/env/bin/python" - <<'EOF' || failures+=("pins or imports")
import importlib.metadata as md
import gadget
pins = {"numpy": "1.26.4", "ismrmrd": "1.14.0", "gadgetron": "1.4.1"}
got = {name: md.version(name) for name in pins}
assert got == pins, f"pins changed: {got}"
assert "site-packages" in gadget.__file__, gadget.__file__
import gadget.handlers, gadget.listen, gadget.images, diffusion_core.priors  # noqa: E401
print("pins", got, "; gadget from", gadget.__file__)
EOF

step "the gadget driven as Gadgetron drives it, images and config, in this env"
# ismrmrd 1.14's Image.deserialize_from (gadgetron-python's read_image) warns about its own
# transposed Image.matrix_size, and h5py 3.8's chunk guess calls np.product (deprecated in numpy 1.25);
# the tests turn warnings into errors, so those two library warnings are let through.
as_user "$WORK/env/bin/python" -m pytest -q -p no:cacheprovider \
  -W "ignore:This function currently returns a result that is inconsistent:UserWarning" \
  -W "ignore:\`product\` is deprecated:DeprecationWarning" \
  "$WORK/src/tests/gadget/test_gadgetron_protocol.py" "$WORK/src/tests/gadget/test_images.py" \
  "$WORK/src/tests/gadget/test_config.py" -m "not slow" || failures+=("gadget tests")

step "a replay of the bundled example with the installed console script"
as_user "$WORK/env/bin/gadgetron-diffusion" replay "$WORK/src/gadget/examples/brain_t1_8ch_r4.h5" \
  "$WORK/out/out.h5" --nfe 2 --samples 2 --cg-iters 2 --device cpu --output-type uint16 --no-progress \
  || failures+=("replay")

if [ ${#failures[@]} -gt 0 ]; then
  echo "FAILED: ${failures[*]}" >&2
  exit 1
fi
echo "Gadgetron env check passed"
