#!/usr/bin/env bash
# CI: sdstudio installed as a user installs it. Builds the wheel from the tracked files, installs it
# (not editable) into a fresh venv, and from an empty folder with HOME set to a temporary folder runs
# `sdstudio doctor`, a 2-step `sdstudio train demo-dreambooth`, `sdstudio export` of that run and
# `sdstudio runs --json`; then checks that nothing was written under the venv's site-packages.
#
#   .ci/wheel_check.sh [SOURCE_DIR]   SOURCE_DIR: a checkout (default: this one; its tracked files are used)
#
# The venv sees the machine's packages (--system-site-packages), so torch and the other libraries come
# from there and only sdstudio comes from the wheel; the script proves `import sdstudio` resolves
# inside the venv. SDSTUDIO_CI_NO_INSTALL=1 builds without build isolation (no download of setuptools).
set -euo pipefail
src="$(cd "${1:-$(dirname "$0")/..}" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/sdstudio-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
say() { printf '\nwheel-check: %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

# a clean copy of what git tracks (plus new, not ignored files), so no stale build/ leaks into the wheel;
# a folder that is no git checkout (.ci/run's copy of one) is taken as it is, less build leftovers
mkdir "$work/src"
if git -C "$src" rev-parse --show-toplevel >/dev/null 2>&1; then
    (cd "$src" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf -) | tar -xf - -C "$work/src"
else
    tar -C "$src" --exclude=__pycache__ --exclude=.pytest_cache --exclude=./build --exclude='*.egg-info' -cf - . \
        | tar -xf - -C "$work/src"
fi

say "build the wheel"
isolation=()
if [ -n "${SDSTUDIO_CI_NO_INSTALL:-}" ]; then isolation=(--no-build-isolation); fi
(cd "$work/src" && show python -m pip wheel --no-deps "${isolation[@]}" . -w "$work/dist" -q)
wheel="$(ls "$work"/dist/sdstudio-*.whl)"
bytes=$(stat -c %s "$wheel")
echo "wheel: $(basename "$wheel"), $bytes bytes ($(( bytes / 1000000 )) MB; limit 40 MB)"
[ "$bytes" -le 40000000 ] || { echo "wheel-check: the wheel is over 40 MB" >&2; exit 1; }
python - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for needed in ("sdstudio/_shipped/models/demo/model_index.json", "sdstudio/_shipped/data/configs/demo-dreambooth.toml",
               "sdstudio/_shipped/data/dreambooth/pink-heart/00.png", "sdstudio/_shipped/data/shapes/0000.png"):
    assert needed in names, f"the wheel lacks {needed}"
print(f"wheel holds {len(names)} files: the package, the demo model, the sample data and the configs")
PY

say "install it (not editable) into a fresh venv that sees the machine's torch & co."
show python -m venv --system-site-packages "$work/venv"
py="$work/venv/bin/python"
show "$py" -m pip install -q --no-index --no-deps --force-reinstall "$wheel" 2>&1 | grep -v "^Not uninstalling\|^Can't uninstall" || true
site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mkdir "$work/home" "$work/empty"
# as a user would run it: no checkout on PYTHONPATH, none of sdstudio's variables, a fresh HOME
run_env=(env -u PYTHONPATH -u SDSTUDIO_HOME -u SDSTUDIO_RUNS -u SDSTUDIO_CONFIG -u SDSTUDIO_DEMO_MODEL -u SDSTUDIO_MODELS
         -u XDG_CONFIG_HOME HOME="$work/home" HF_HUB_OFFLINE=1 PATH="$work/venv/bin:$PATH")
cd "$work/empty"
user() { printf '$ %s\n' "$*"; "${run_env[@]}" "$@"; }  # prints the command as the user types it
where="$("${run_env[@]}" python -c 'import sdstudio; print(sdstudio.__file__)')"
echo "import sdstudio -> $where"
case "$where" in "$site"/sdstudio/*) ;; *) echo "wheel-check: sdstudio was not imported from $site" >&2; exit 1;; esac
(cd "$site" && find . -path ./__pycache__ -prune -o -printf '%p %s %T@\n' | sort) > "$work/site-before"

say "from an empty folder ($work/empty) with HOME=$work/home, PYTHONPATH and SDSTUDIO_* unset"
user sdstudio doctor
user sdstudio configs
user sdstudio train demo-dreambooth --max_train_steps 2 --checkpointing_steps 2 --validation_steps 0 \
    --validation_loss false --run_name wheel-check
run_dir="$work/home/sdstudio/wheel-check"
[ -f "$run_dir/checkpoints/step-000002/pytorch_lora_weights.safetensors" ] \
    || { echo "wheel-check: no checkpoint in $run_dir" >&2; exit 1; }
user sdstudio export "$run_dir"
ls "$run_dir"/exports/*.safetensors >/dev/null
user sdstudio runs --json
user sdstudio runs
user sdstudio configs copy demo-text2image "$work/empty/my-run.toml"
user python -c "from sdstudio.core.config import load_config; c = load_config('my-run.toml'); print('the copy validates; train_data_dir =', c.train_data_dir)"

say "nothing was written under the venv's site-packages"
(cd "$site" && find . -path ./__pycache__ -prune -o -printf '%p %s %T@\n' | sort) > "$work/site-after"
if ! diff "$work/site-before" "$work/site-after"; then
    echo "wheel-check: files changed under $site (above)" >&2; exit 1
fi
echo "unchanged: $(wc -l < "$work/site-after") entries under site-packages"
echo "home after the run: $(cd "$work/home" && find . -maxdepth 2 | sort | tr '\n' ' ')"
echo "wheel-check: passed in $(( $(date +%s) - start )) s"
