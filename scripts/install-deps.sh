#!/usr/bin/env bash
# Installs what MediaPro needs at run and test time on a Debian machine, only where
# it is missing: ffmpeg/ffprobe, redis-server (+ redis-cli), curl, a C compiler,
# python3 + pip, supervisord + supervisorctl (supervisor/, tests/scale), nginx and
# psql (tests), chromium + chromedriver and npm (the browser tests in
# crates/e2e/tests/e2e/browser.rs), axe-core from npm (into tests/browser), a
# current yt-dlp from PyPI, and a pinned Schemathesis from PyPI in a virtual
# environment (tests/contract). Checks (but does not install) the Rust toolchain. Safe
# to run again: a second run installs nothing.
#
# Runs as root, or as a user with sudo. Usage: scripts/install-deps.sh
set -euo pipefail

# yt-dlp must be at least this release (its versions are dates: YYYY.MM.DD[.N]).
readonly YTDLP_MIN_VERSION="2026.07.04"

log() { printf '[install-deps] %s\n' "$*"; }
die() {
    printf '[install-deps] ERROR: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# --- privileges: sudo only when not root and sudo exists ----------------------
SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    if have sudo; then
        SUDO=(sudo)
    fi
fi
as_root() {
    if [[ "$(id -u)" -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
        die "need root to run '$*' (not root and sudo is not installed)"
    fi
    "${SUDO[@]}" "$@"
}

# --- Rust toolchain (checked, never installed) --------------------------------
if have cargo; then
    log "cargo: already present ($(cargo --version 2>/dev/null || echo 'version unknown'))"
elif [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    die "cargo is installed in ${CARGO_HOME:-$HOME/.cargo}/bin but not on PATH; run: source \"${CARGO_HOME:-$HOME/.cargo}/env\""
else
    die "the Rust toolchain (cargo) is not installed. Install it with rustup (https://rustup.rs), then run this script again."
fi
# scripts/test.sh also needs rustfmt and clippy; warn only (running the service does not).
for component in fmt clippy; do
    if cargo "$component" --version >/dev/null 2>&1; then
        log "cargo $component: already present"
    else
        log "WARNING: 'cargo $component' is missing (needed by scripts/test.sh); install it with: rustup component add ${component/fmt/rustfmt}"
    fi
done

# --- Debian packages ------------------------------------------------------------
apt_packages=()
need_apt() {
    # need_apt <what> <package...>
    local what="$1"
    shift
    log "$what: missing, will install apt package(s): $*"
    apt_packages+=("$@")
}

if have ffmpeg && have ffprobe; then
    log "ffmpeg/ffprobe: already present"
else
    need_apt "ffmpeg/ffprobe" ffmpeg
fi

if have redis-server; then
    log "redis-server: already present"
else
    need_apt "redis-server" redis-server
fi
if have redis-cli; then
    log "redis-cli: already present"
elif ! have redis-server; then
    log "redis-cli: missing, comes with redis-server (its dependency redis-tools)"
else
    need_apt "redis-cli" redis-tools
fi

if have curl; then
    log "curl: already present"
else
    need_apt "curl" curl
fi

# Rust needs a C compiler and linker (cc), and some crates (bundled SQLite) build C.
if have cc; then
    log "C compiler (cc): already present"
else
    need_apt "C compiler (cc)" gcc libc6-dev
fi

if have python3; then
    log "python3: already present"
else
    need_apt "python3" python3
fi

# supervisord/supervisorctl: supervisor/ (deployment) and tests/scale (CI) use them.
# The Debian package also registers a system service; its start-up is skipped where
# policy-rc.d forbids it (containers), and nothing here relies on that service.
if have supervisord && have supervisorctl; then
    log "supervisord/supervisorctl: already present"
else
    need_apt "supervisord/supervisorctl" supervisor
fi

# nginx: tests/deploy/nginx_test.sh runs Debian's nginx (as a child process, never
# the system service) in front of the API.
if have nginx || [[ -x /usr/sbin/nginx ]]; then
    log "nginx: already present"
else
    need_apt "nginx" nginx
fi

# psql: scripts/test.sh drops the throwaway databases of the PostgreSQL test run.
if have psql; then
    log "psql: already present"
else
    need_apt "psql" postgresql-client
fi

# chromium + chromedriver: the browser tests (crates/e2e/tests/e2e/browser.rs) drive
# Debian's Chromium headless through chromedriver.
if have chromium || [[ -x /usr/bin/chromium ]]; then
    log "chromium: already present"
else
    need_apt "chromium" chromium
fi
if have chromedriver || [[ -x /usr/bin/chromedriver ]]; then
    log "chromedriver: already present"
else
    need_apt "chromedriver" chromium-driver
fi

# npm: installs axe-core (tests/browser/package.json) for the accessibility test.
if have npm; then
    log "npm: already present"
else
    need_apt "npm" npm
fi

pip_works() {
    { have python3 && python3 -m pip --version >/dev/null 2>&1; } || have pip3 || have pip
}
if pip_works; then
    log "pip: already present"
else
    need_apt "pip" python3-pip
fi

# python3-venv: the Schemathesis virtual environment (below) needs ensurepip.
if have python3 && python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    log "python3 venv: already present"
else
    need_apt "python3 venv" python3-venv
fi

if [[ ${#apt_packages[@]} -gt 0 ]]; then
    have apt-get || die "apt-get not found: install ${apt_packages[*]} by hand (this script supports Debian/Ubuntu)"
    log "running apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    log "installing: ${apt_packages[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
    hash -r
    log "apt packages installed"
else
    log "apt: nothing to install (skipping apt-get update)"
fi

# --- yt-dlp from PyPI -----------------------------------------------------------
# version_at_least <have> <want>: true if <have> >= <want> (date-like dotted versions).
version_at_least() {
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

ytdlp_version() {
    yt-dlp --version 2>/dev/null | head -n1 | tr -d '[:space:]'
}

pip_cmd() {
    if have python3 && python3 -m pip --version >/dev/null 2>&1; then
        echo "python3 -m pip"
    elif have pip3; then
        echo "pip3"
    else
        echo "pip"
    fi
}

install_ytdlp() {
    local pip out
    read -r -a pip <<<"$(pip_cmd)"
    log "running: ${pip[*]} install --upgrade yt-dlp"
    if out="$("${pip[@]}" install --upgrade yt-dlp 2>&1)"; then
        printf '%s\n' "$out" | tail -n 2
        return 0
    fi
    if grep -q 'externally-managed-environment' <<<"$out"; then
        log "pip refused (externally managed environment); retrying with --break-system-packages"
        "${pip[@]}" install --upgrade --break-system-packages yt-dlp
        return 0
    fi
    printf '%s\n' "$out" >&2
    die "pip could not install yt-dlp"
}

current="$(ytdlp_version || true)"
if [[ -n "$current" ]] && version_at_least "$current" "$YTDLP_MIN_VERSION"; then
    log "yt-dlp: already present ($current >= $YTDLP_MIN_VERSION)"
else
    if [[ -n "$current" ]]; then
        log "yt-dlp: $current is older than $YTDLP_MIN_VERSION, upgrading from PyPI"
    else
        log "yt-dlp: missing, installing from PyPI"
    fi
    install_ytdlp
    hash -r
    current="$(ytdlp_version || true)"
    if [[ -z "$current" && -x "$HOME/.local/bin/yt-dlp" ]]; then
        die "yt-dlp was installed to $HOME/.local/bin, which is not on PATH; add it to PATH and run again"
    fi
    [[ -n "$current" ]] || die "yt-dlp still not found on PATH after installing it"
    version_at_least "$current" "$YTDLP_MIN_VERSION" ||
        die "yt-dlp on PATH ($(command -v yt-dlp)) is $current, still older than $YTDLP_MIN_VERSION"
    log "yt-dlp: installed $current"
fi

# --- axe-core from npm (tests/browser) --------------------------------------------
# The version is pinned in tests/browser/package.json; node_modules is not committed.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
browser_dir="$repo_root/tests/browser"
if [[ -f "$browser_dir/node_modules/axe-core/axe.min.js" ]]; then
    log "axe-core: already present ($browser_dir/node_modules)"
else
    have npm || die "npm not found: it is needed to install axe-core into $browser_dir"
    log "axe-core: missing, running: npm install --prefix $browser_dir"
    npm install --prefix "$browser_dir" --no-audit --no-fund
    [[ -f "$browser_dir/node_modules/axe-core/axe.min.js" ]] ||
        die "npm install did not produce $browser_dir/node_modules/axe-core/axe.min.js"
    log "axe-core: installed"
fi

# --- Schemathesis from PyPI (tests/contract/schemathesis_test.sh) ------------------------
# A pinned release in a virtual environment of its own (its dependencies stay out of
# the system Python and of yt-dlp's), under ~/.cache/mediapro.
# shellcheck source=/dev/null
source "$repo_root/scripts/schemathesis-version.sh"
st_venv="${XDG_CACHE_HOME:-$HOME/.cache}/mediapro/schemathesis-$SCHEMATHESIS_VERSION"
if [[ -x "$st_venv/bin/st" ]] && [[ "$("$st_venv/bin/st" --version 2>/dev/null | awk '{print $NF}')" == "$SCHEMATHESIS_VERSION" ]]; then
    log "schemathesis: already present ($SCHEMATHESIS_VERSION in $st_venv)"
else
    log "schemathesis: missing, installing $SCHEMATHESIS_VERSION from PyPI into $st_venv"
    rm -rf "$st_venv"
    mkdir -p "$(dirname "$st_venv")"
    python3 -m venv "$st_venv"
    "$st_venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    [[ -x "$st_venv/bin/st" ]] || die "pip did not install $st_venv/bin/st"
    log "schemathesis: installed $("$st_venv/bin/st" --version 2>/dev/null)"
fi

log "all dependencies present"
