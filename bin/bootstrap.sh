# Sourced by bin/run and bin/test: installs what the project needs and activates .venv.
# Safe to run again: each step checks before it acts.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

apt_install() {  # apt_install PROGRAM PACKAGE...: install Debian packages when PROGRAM is missing
  local probe="$1"; shift
  if ! command -v "$probe" >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/"$probe" >/dev/null 2>&1; then
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "[ccp] installing Debian packages: $*"
    $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >/dev/null
  fi
}
apt_install initdb postgresql
apt_install redis-server redis-server

# anvil, a local Ethereum node, from the npm registry (its binary ships in the platform package).
ANVIL_VERSION=1.7.1
export CCP_ANVIL="$REPO/.tools/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
if [ ! -x "$CCP_ANVIL" ] || ! "$CCP_ANVIL" --version 2>/dev/null | grep -q "$ANVIL_VERSION"; then
  command -v npm >/dev/null 2>&1 || apt_install npm npm
  echo "[ccp] installing anvil $ANVIL_VERSION (npm)"
  npm install --prefix "$REPO/.tools/anvil" --no-audit --no-fund --silent "@foundry-rs/anvil@$ANVIL_VERSION" >/dev/null
fi

PY="${CCP_PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[ccp] creating .venv"
  "$PY" -m venv .venv
fi
stamp=".venv/.requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[ccp] installing Python packages (requirements.txt)"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt 2> >(grep -v "^WARNING: Location" >&2)
  echo "$want" > "$stamp"
fi
export PATH="$REPO/.venv/bin:$PATH"

# The matching engine compiled with mypyc (ccp/book/engine.py stays the one source; BENCHMARKS.md "Continuous
# matching engine"): built when missing or when engine.py's sha256 is not the one it was built from, then moved
# into place (a rename: a running process keeps its mapping). A failed build stops here.
engine_stamp=".var/mypyc/engine.sha256"
want="$(sha256sum ccp/book/engine.py | cut -d' ' -f1)"
ext="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
if [ "$(cat "$engine_stamp" 2>/dev/null)" != "$want" ] || [ ! -f "ccp/book/engine$ext" ]; then
  apt_install gcc gcc
  echo "[ccp] compiling ccp/book/engine.py (mypyc)"
  rm -rf .var/mypyc && mkdir -p .var/mypyc
  .venv/bin/python bin/build_engine.py >.var/mypyc/build.log 2>&1 || { cat .var/mypyc/build.log >&2; exit 1; }
  echo "$want" > "$engine_stamp"
fi
