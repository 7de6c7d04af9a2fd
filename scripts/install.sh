#!/usr/bin/env bash
# Install facewatch as a systemd service, on a Jetson (TensorRT) or any systemd Linux host (ONNX Runtime).
#
#   sudo scripts/install.sh [--dry-run] [--no-start] [--prefix DIR] [--python PYTHON] [--package WHEEL]
#                           [--pip-args "ARGS"]
#   sudo scripts/install.sh --uninstall [--purge] [--dry-run]
#
# Checks the platform (JetPack release, Python, TensorRT and pycuda), creates the user `facewatch` (group
# video), installs the package into PREFIX/venv (default /opt/facewatch) made from the system's Python with
# --system-site-packages, so JetPack's own tensorrt, cv2 and numpy are used; installs the unit, an example
# configuration (never over an existing one) and the credentials of the secrets that exist; enables and
# starts the service. Running it again upgrades in place. --uninstall keeps /etc/facewatch and the engines
# unless --purge. --package installs a built wheel instead of this source tree. Exit 0 done, 1 failed, 2 bad
# usage or an unsuitable host. --dry-run changes nothing and needs neither root nor systemd: it shows every
# step on any host, says what this host lacks for a real run, and exits 0.
set -euo pipefail

source_dir=$(cd "$(dirname "$0")/.." && pwd)
prefix=/opt/facewatch
python=/usr/bin/python3
pip_args=""
package=""
dry_run=0
uninstall=0
purge=0
start=1
unit_dir=/etc/systemd/system
config_dir=/etc/facewatch
secrets=(mqtt_password command_key)
lacking=()

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
fail() { echo "install.sh: $*" >&2; exit 1; }
refuse() { echo "install.sh: $*" >&2; exit 2; }
lack() {  # what this host lacks for a real run: refused (exit 2), or with --dry-run said and the run goes on
    if [ "$dry_run" = 1 ]; then lacking+=("$*"); echo "install.sh: a real run would stop here: $*" >&2; else refuse "$*"; fi
}
say() { echo "== $*"; }
run() {  # a change to the system: shown with --dry-run, else done
    if [ "$dry_run" = 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}
write() {  # write stdin to FILE (mode MODE), or show it with --dry-run
    local file=$1 mode=$2
    if [ "$dry_run" = 1 ]; then printf '+ write %s (mode %s):\n' "$file" "$mode"; sed 's/^/    /'; return; fi
    cat > "$file.new" && chmod "$mode" "$file.new" && mv "$file.new" "$file"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --uninstall) uninstall=1 ;;
        --purge) purge=1 ;;
        --no-start) start=0 ;;
        --prefix) prefix=${2:?--prefix needs a folder}; shift ;;
        --python) python=${2:?--python needs an interpreter}; shift ;;
        --pip-args) pip_args=${2-}; shift ;;
        --package) package=${2:?--package needs a wheel}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; refuse "unknown option $1" ;;
    esac
    shift
done
case "$prefix" in /*) ;; *) refuse "--prefix must be an absolute path, got $prefix" ;; esac

check_host() {
    if [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then refuse "run it as root (sudo), or with --dry-run to see what it does"; fi
    command -v systemctl >/dev/null || lack "systemctl not found: this host does not run systemd"
    [ -d /run/systemd/system ] || lack "systemd is not running on this host (no /run/systemd/system)"
}

check_python() {
    [ -x "$python" ] || { lack "no Python at $python (say --python PATH)"; return 1; }
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 6))' || { lack "$python is older than Python 3.6"; return 1; }
    "$python" -c 'import venv, ensurepip' 2>/dev/null || \
        lack "$python cannot make virtual environments: apt-get install python3-venv"
    say "Python: $("$python" --version 2>&1) ($python)"
}

check_platform() {
    python_ok=1
    check_python || python_ok=0
    jetson=0
    if [ -r /etc/nv_tegra_release ]; then
        jetson=1
        local release
        release=$(head -n 1 /etc/nv_tegra_release | sed -E 's/^# (R[0-9]+) \(release\), REVISION: ([0-9.]+).*/\1.\2/')
        say "Jetson: L4T $release ($(case "$release" in R32.*) echo "JetPack 4" ;; R35.*) echo "JetPack 5" ;;
                                   R36.*) echo "JetPack 6" ;; *) echo "JetPack of another release" ;; esac))"
        if [ "$python_ok" = 1 ] && "$python" -c 'import tensorrt' 2>/dev/null; then
            say "TensorRT $("$python" -c 'import tensorrt; print(tensorrt.__version__)') (JetPack's)"
        else
            echo "warning: TensorRT is not importable by $python: facewatch will run ONNX Runtime on the CPU" \
                 "(apt-get install python3-libnvinfer)" >&2
        fi
        [ "$python_ok" = 1 ] && "$python" -c 'import pycuda' 2>/dev/null && say "pycuda: present" || \
            echo "warning: pycuda is missing: pip builds it (needs the CUDA toolkit, nvcc on PATH)" >&2
        extra=jetson
    else
        say "not a Jetson: facewatch will run ONNX Runtime on the CPU"
        extra=cpu
    fi
}

create_user() {
    if getent passwd facewatch >/dev/null; then say "user facewatch exists"; else
        run useradd --system --user-group --home-dir /var/lib/facewatch --no-create-home \
            --shell "$(command -v nologin || echo /usr/sbin/nologin)" facewatch
    fi
    if getent group video >/dev/null; then run usermod -a -G video facewatch; fi
}

install_package() {
    local venv=$prefix/venv pip_upgrade=pip
    [ "$python_ok" = 1 ] && "$python" -c 'import sys; sys.exit(sys.version_info >= (3, 7))' && pip_upgrade='pip<22'
    run mkdir -p "$prefix"
    [ -x "$venv/bin/python" ] || run "$python" -m venv --system-site-packages "$venv"
    # shellcheck disable=SC2086  # pip_args are words on purpose
    run "$venv/bin/python" -m pip install -q --upgrade "$pip_upgrade" $pip_args
    # shellcheck disable=SC2086
    run "$venv/bin/python" -m pip install -q --upgrade "${package:-$source_dir}[$extra]" $pip_args
    run mkdir -p "$prefix/share/doc"
    run cp "$source_dir"/docs/*.md "$prefix/share/doc/"
}

install_unit() {
    sed "s#/opt/facewatch#$prefix#g" "$source_dir/systemd/facewatch.service" | write "$unit_dir/facewatch.service" 0644
    run install -d -m 0750 -o root -g facewatch "$config_dir"
    if [ -e "$config_dir/facewatch.toml" ]; then
        say "keeping the existing $config_dir/facewatch.toml"
    else
        run install -m 0640 -o root -g facewatch "$source_dir/examples/facewatch.toml" "$config_dir/facewatch.toml"
    fi
    local dropin=$unit_dir/facewatch.service.d lines="" systemd_version
    systemd_version=$( (systemctl --version 2>/dev/null || true) | head -n 1 | awk '{print $2}')
    for name in "${secrets[@]}"; do
        [ -f "$config_dir/$name" ] || continue
        if [ "${systemd_version:-0}" -ge 247 ] 2>/dev/null; then
            lines+="LoadCredential=$name:$config_dir/$name"$'\n'
        else
            echo "note: systemd $systemd_version has no LoadCredential= (247+): for $config_dir/$name, set" \
                 "$( [ "$name" = mqtt_password ] && echo mqtt.password_file || echo commands.key_file )" \
                 "= \"$config_dir/$name\" in facewatch.toml and make the file readable by the service:" \
                 "chgrp facewatch $config_dir/$name; chmod 0640 $config_dir/$name" >&2
        fi
    done
    if [ -n "$lines" ]; then
        run mkdir -p "$dropin"
        printf '# Made by scripts/install.sh for the secret files present in %s.\n[Service]\n%s' "$config_dir" "$lines" |
            write "$dropin/credentials.conf" 0644
    elif [ -e "$dropin/credentials.conf" ]; then
        run rm -f "$dropin/credentials.conf"
    fi
    run systemctl daemon-reload
}

start_service() {
    run systemctl enable facewatch.service
    if [ "$start" = 0 ]; then say "installed; start it with: systemctl start facewatch"; return; fi
    say "starting facewatch (a first boot builds the engine first: follow with journalctl -fu facewatch)"
    run systemctl restart --no-block facewatch.service
    if [ "$dry_run" = 0 ]; then
        sleep 2
        systemctl --no-pager status facewatch.service | head -n 5 || true
    fi
}

uninstall_all() {
    check_host
    run systemctl disable --now facewatch.service 2>/dev/null || true
    run rm -f "$unit_dir/facewatch.service"
    run rm -rf "$unit_dir/facewatch.service.d"
    run systemctl daemon-reload
    run rm -rf "$prefix"
    if [ "$purge" = 1 ]; then
        run rm -rf "$config_dir" /var/lib/facewatch /var/cache/facewatch
        if getent passwd facewatch >/dev/null; then run userdel facewatch; fi
    else
        say "kept $config_dir and /var/lib/facewatch (engines); --purge removes them and the user"
    fi
}

dry_run_end() {  # what a dry run showed, and what this host lacks for a real one
    say "dry run: nothing was changed; the lines with + are what a real run (as root) does"
    if [ "${#lacking[@]}" -gt 0 ]; then
        echo "== this host lacks what a real run needs (it would stop with exit 2):"
        printf '   - %s\n' "${lacking[@]}"
    fi
}

if [ "$uninstall" = 1 ]; then
    uninstall_all
    if [ "$dry_run" = 1 ]; then dry_run_end; fi
    exit 0
fi
check_host
check_platform
create_user
install_package
install_unit
start_service
if [ "$dry_run" = 1 ]; then dry_run_end; exit 0; fi
say "done: $prefix/venv/bin/facewatch, unit $unit_dir/facewatch.service, configuration $config_dir/facewatch.toml"
