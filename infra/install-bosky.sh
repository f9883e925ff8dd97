#!/bin/bash
# Bake bosky into an image: install it into the Python that runs cloud-init,
# register the module (bosky install) and check the result (bosky doctor).
#
# Used as is by infra/packer-provisioner.pkr.hcl; infra/image-builder-component.yaml
# inlines the same body (tests/test_infra.py keeps the two identical).
#
# Environment:
#   BAKE_STEP           install (default) or doctor
#   BAKE_PROJECT        install: the event Source (bosky's project), required
#   BAKE_EVENT_BUS      install: event bus name or ARN (default: default)
#   BAKE_BOSKY_PACKAGE  install: bosky's package (default: bosky): a pip
#                       requirement or wheel file, or a bosky_VERSION_all.deb
#                       copied onto the machine (Debian and Ubuntu: apt installs it)
#   BAKE_DOCTOR_ARGS    doctor: extra arguments, e.g. --image on a build instance
set -euo pipefail

step="${BAKE_STEP:-install}"

# cloud-init imports cc_bosky with the interpreter its own script names, so
# that interpreter is where bosky must be installed.
cloud_init="$(command -v cloud-init || true)"
if [ -z "$cloud_init" ]; then
  echo "bosky: cloud-init is not installed on this machine" >&2
  exit 1
fi
read -r shebang < "$cloud_init"
read -r python _ <<< "${shebang#\#!}"
case "$python" in
  */env) python="$(command -v python3)" ;;
esac

ensure_pip() {
  if ! "$python" -m pip --version > /dev/null 2>&1; then
    system_packages python3-pip
  fi
}

system_packages() {
  if command -v apt-get > /dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
  elif command -v dnf > /dev/null; then
    dnf install -y -q "$@"
  else
    yum install -y -q "$@"
  fi
}

install_bosky() {
  local project="${BAKE_PROJECT:?set BAKE_PROJECT to the event Source (bosky project)}"
  local package="${BAKE_BOSKY_PACKAGE:-bosky}"
  local flags=(--no-cache-dir --upgrade)
  if [[ "$package" == *.deb ]]; then
    # Debian's own route: dist-packages, python3-boto3 and python3-yaml from apt.
    [[ "$package" == /* ]] || package="./$package"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package"
  elif "$python" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'
  then
    # An externally managed Python (PEP 668) is the distribution's: its boto3
    # and PyYAML come from its packages, and pip adds bosky alone (--no-deps),
    # so nothing the distribution installed is replaced. A .deb avoids pip.
    system_packages python3-boto3 python3-yaml
    ensure_pip
    "$python" -m pip install "${flags[@]}" --no-deps --break-system-packages "$package"
  else
    ensure_pip
    "$python" -m pip install "${flags[@]}" "$package"
  fi
  "$python" -m cc_bosky install --config --project "$project" \
    --event-bus "${BAKE_EVENT_BUS:-default}"
}

case "$step" in
  install)
    install_bosky
    ;;
  doctor)
    # shellcheck disable=SC2086  # BAKE_DOCTOR_ARGS is a list of words
    "$python" -m cc_bosky doctor ${BAKE_DOCTOR_ARGS:-}
    ;;
  *)
    echo "bosky: BAKE_STEP must be install or doctor, not '$step'" >&2
    exit 2
    ;;
esac
