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
#   BAKE_BOSKY_PACKAGE  install: pip requirement for bosky (default: bosky);
#                       a version pin, or a wheel file copied onto the machine
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
  if "$python" -m pip --version > /dev/null 2>&1; then
    return
  fi
  if command -v apt-get > /dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip
  elif command -v dnf > /dev/null; then
    dnf install -y -q python3-pip
  else
    yum install -y -q python3-pip
  fi
}

install_bosky() {
  local project="${BAKE_PROJECT:?set BAKE_PROJECT to the event Source (bosky project)}"
  local flags=(--no-cache-dir --upgrade)
  # Distributions mark their Python as externally managed (PEP 668). cloud-init
  # sees only what is installed into that Python, so that is where bosky goes.
  if "$python" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'
  then
    flags+=(--break-system-packages)
  fi
  ensure_pip
  "$python" -m pip install "${flags[@]}" "${BAKE_BOSKY_PACKAGE:-bosky}"
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
